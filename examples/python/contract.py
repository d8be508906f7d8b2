"""The flowgate.v1 contract in Python: stubs generated from proto/ and Struct helpers.

Nothing generated is committed. At first run, grpcio-tools compiles
`proto/proto/flowgate/v1/flow.proto` into a cache directory named after a hash
of the .proto file (`examples/python/.stubs/<hash>/`, or `$FLOWGATE_STUBS_DIR`),
so editing the contract regenerates the stubs and nothing stale is imported.
Several processes may start at once (the end-to-end tests do): each generates
into a private directory and renames it into place; the first rename wins.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from google.protobuf import json_format, struct_pb2

HERE = Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "proto" / "proto"
PROTO_FILE = "flowgate/v1/flow.proto"


def _generate(out: Path) -> None:
    """Compiles the contract into `out` with grpcio-tools' bundled protoc."""
    from grpc_tools import protoc
    import grpc_tools

    # google/protobuf/struct.proto ships inside grpcio-tools.
    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            PROTO_FILE,
        ]
    )
    if code != 0:
        raise RuntimeError(f"grpcio-tools could not compile {PROTO_ROOT / PROTO_FILE}")


def _stubs_dir() -> Path:
    source = (PROTO_ROOT / PROTO_FILE).read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    cache = Path(os.environ.get("FLOWGATE_STUBS_DIR", HERE / ".stubs"))
    target = cache / digest
    if target.is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache))
    try:
        _generate(scratch)
        try:
            scratch.rename(target)
        except OSError:
            # Another process renamed its copy first; theirs is the same code.
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def load():
    """Returns the generated modules `(flow_pb2, flow_pb2_grpc)`."""
    path = str(_stubs_dir())
    if path not in sys.path:
        sys.path.insert(0, path)
    return (
        importlib.import_module("flowgate.v1.flow_pb2"),
        importlib.import_module("flowgate.v1.flow_pb2_grpc"),
    )


pb, pb_grpc = load()


def struct_to_dict(value: struct_pb2.Struct | None) -> dict:
    """A Struct as a plain dict. Every JSON number arrives as a float (a double on
    the wire); the gateway has already refused integers a double cannot hold."""
    if value is None:
        return {}
    return json_format.MessageToDict(value)


# The largest integer a double (every Struct number) holds exactly.
_MAX_SAFE_INTEGER = 2**53 - 1


def dict_to_struct(value: dict) -> struct_pb2.Struct:
    """A dict as a Struct. Raises ValueError for NaN or infinities, which JSON cannot
    carry (the gateway would answer 502 `bad_upstream_response`), and for integers
    beyond ±(2^53 − 1), which a double would round to another number."""
    _check_finite(value)
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def _check_finite(value) -> None:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise ValueError("answer data holds a number JSON cannot carry (NaN or infinity)")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _MAX_SAFE_INTEGER:
        raise ValueError(
            f"answer data holds the integer {value}, beyond ±(2^53 − 1): a double would change it"
        )
    if isinstance(value, dict):
        for item in value.values():
            _check_finite(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_finite(item)
