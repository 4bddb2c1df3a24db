"""The operations of cio-anon, as functions of (workspace, now, inputs).

Each returns a plain result record that `render` turns into a table or JSON. The rules
are decided in `rules`; the SQL lives in `workspace`; the service only sequences them.

- `session`: opening a workspace for one command, creating it, its settings
- `people`: identify (assigning an anonymous id, merging its events), traits sent for
  an anonymous id, Merge People, delete
- `events`: track and purge
- `queries`: the activity log, a profile, the people, explain
- `history`: the journal of calls, `export`, and forgetting a deleted person
- `things`: devices, suppression, objects and relationships, calls stored as they came
- `shared`: warnings, finding a person, placing and attaching anonymous events
"""

from cio_anon.models import MAX_LIMIT
from cio_anon.service.events import (
    PURGE_CHUNK,
    PurgeResult,
    TrackResult,
    new_event_id,
    purge,
    purge_in_chunks,
    track,
)
from cio_anon.service.history import export
from cio_anon.service.people import (
    DeleteResult,
    IdentifyResult,
    MergeResult,
    TraitsResult,
    delete_person,
    identify,
    merge_people,
    set_anonymous_traits,
)
from cio_anon.service.queries import (
    TABS,
    AnonymousProfile,
    Explanation,
    LogPage,
    Profile,
    activity_log,
    anonymous_profile,
    explain,
    list_people,
    search_people,
    show,
)
from cio_anon.service.session import init_workspace, opened, update_settings
from cio_anon.service.shared import Suppressed, Warning, anonymous_ids_of, find_person
from cio_anon.service.things import (
    delete_device,
    delete_object,
    relate,
    store_call,
    suppress,
    update_device,
    update_object,
)

__all__ = [
    "MAX_LIMIT",
    "PURGE_CHUNK",
    "TABS",
    "DeleteResult",
    "Suppressed",
    "Explanation",
    "IdentifyResult",
    "LogPage",
    "MergeResult",
    "Profile",
    "PurgeResult",
    "TrackResult",
    "TraitsResult",
    "Warning",
    "AnonymousProfile",
    "activity_log",
    "anonymous_profile",
    "anonymous_ids_of",
    "delete_device",
    "delete_object",
    "delete_person",
    "explain",
    "export",
    "find_person",
    "identify",
    "init_workspace",
    "list_people",
    "merge_people",
    "new_event_id",
    "opened",
    "purge",
    "purge_in_chunks",
    "relate",
    "search_people",
    "set_anonymous_traits",
    "show",
    "store_call",
    "suppress",
    "track",
    "update_device",
    "update_object",
    "update_settings",
]
