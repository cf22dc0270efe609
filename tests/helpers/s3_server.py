"""moto's S3 server (`python -m moto.server`) with its object writes made atomic, as real S3 and MinIO make them.

moto checks a conditional create (`If-None-Match: *`) and then writes, in two steps, in whichever of its
request threads the request landed on (`put_object` in `moto/s3/responses.py`): two publishers racing for one
manifest can both pass the check and both "win". Real S3 and MinIO decide a conditional write atomically. Here
every object write (a PUT, and the completion of a multipart upload, which can carry the same condition) holds
one lock from its check to its write, so the store's race tests test our code, not moto's.

    python tests/helpers/s3_server.py -H 127.0.0.1 -p PORT      # moto.server's own arguments
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from moto.s3.responses import S3Response
from moto.server import main

WRITES = threading.Lock()


def _atomic(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def write(self: S3Response, *args: Any, **kwargs: Any) -> Any:
        with WRITES:
            return method(self, *args, **kwargs)

    return write


WRITERS = ("put_object", "_key_response_post")  # moto 5.x: a PUT; a POST (completes a multipart upload)
assert hasattr(S3Response, WRITERS[0]), "moto's S3Response has no put_object: update tests/helpers/s3_server.py"
for name in WRITERS:
    if hasattr(S3Response, name):
        setattr(S3Response, name, _atomic(getattr(S3Response, name)))

if __name__ == "__main__":
    main()
