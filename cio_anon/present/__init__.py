"""What people and programs are shown: result records as JSON documents, NDJSON and CSV
(`documents`, no Rich: `serve` uses it), as Rich output (`render`), and the plain words
both share with the web view (`words`)."""
