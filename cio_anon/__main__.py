from cio_anon.cli import main

main()
