"""Regenerate service/api/ from protos/ with grpcio-tools, or check that it has not drifted.

Our messages share package and message names with TensorFlow's own generated
code (that is what makes them wire-compatible), so both cannot live in protobuf's
default descriptor pool in one process: TensorFlow registers `tensorflow.TensorProto`
on import. The generated modules are therefore rewritten to register into a private
pool (service/api/_pool.py). Wire format and class behaviour are unchanged.

Usage: python scripts/gen_protos.py [--check]
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
API_DIR = ROOT / "service" / "api"
KEEP = {"__init__.py", "_pool.py"}
POOL_IMPORT = "from service.api._pool import POOL as _POOL\n"


def _patch(source: str) -> str:
    """Point a generated *_pb2.py at the private descriptor pool."""
    source = source.replace("_descriptor_pool.Default().AddSerializedFile", "_POOL.AddSerializedFile")
    return re.sub(r"(from google\.protobuf\.internal import builder as _builder\n)", r"\1" + POOL_IMPORT, source)


def generate(out_root: Path) -> Path:
    """Compile every proto under protos/ into out_root; return the api folder inside it."""
    protos = sorted(str(p) for p in (PROTO_ROOT / "service" / "api").glob("*.proto"))
    cmd = [
        sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_ROOT}",
        f"--python_out={out_root}", f"--pyi_out={out_root}", f"--grpc_python_out={out_root}", *protos,
    ]
    subprocess.run(cmd, check=True)
    api = out_root / "service" / "api"
    for module in api.glob("*_pb2.py"):
        module.write_text(_patch(module.read_text()))
    for empty in api.glob("*_pb2_grpc.py"):
        if "class " not in empty.read_text():
            empty.unlink()  # messages-only protos get an empty grpc module; keep the tree small
    return api


def _generated_names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_file() and p.name not in KEEP and p.suffix in {".py", ".pyi"}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if service/api differs from protos/")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        names = _generated_names(fresh)
        if args.check:
            current = _generated_names(API_DIR)
            changed = [n for n in sorted(names & current) if not filecmp.cmp(fresh / n, API_DIR / n, shallow=False)]
            drift = sorted(names ^ current) + changed
            if drift:
                print("generated code drifted from protos/ (run `make protos`):", ", ".join(drift))
                return 1
            print(f"service/api matches protos/ ({len(names)} files)")
            return 0
        for stale in _generated_names(API_DIR) - names:
            (API_DIR / stale).unlink()
        for name in names:
            shutil.copyfile(fresh / name, API_DIR / name)
        print(f"wrote {len(names)} files to {API_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
