"""The CUDA record: the property suite and the benchmarks with torchvision's CUDA kernel in the registry.

``PYTHONPATH=. python3 -m benchmarks.gpu`` (or ``tox -e gpu``) runs on
whatever torch/torchvision the machine already has (a GPU image needs no
install) and writes a dated record, ``benchmarks/records/YYYY-MM-DD-cuda/``
by default (``--out DIR``), meant to be committed:

- ``properties.txt`` / ``properties.xml``: the property suite and the unit
  tests (every torchvision-cuda parametrisation runs; none may skip);
- ``results.json`` plus the report (``summary.md``, ``summary.json``, plots):
  every workload for ``numba``, ``torchvision-cpu`` and ``torchvision-cuda``;
- ``environment.txt``: the device, driver and package versions.

Without a visible GPU it stops at once with exit 2 and says so, rather than
writing a record in which every CUDA case skipped.
"""
from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

import torch

from roialign_suite import options, paths



def environment() -> str:
    import numba
    import torchvision

    lines = [
        f"torch {torch.__version__} (CUDA {torch.version.cuda}), torchvision {torchvision.__version__}, numba {numba.__version__}",
        f"python {sys.version.split()[0]}",
    ]
    for i in range(torch.cuda.device_count()):
        lines.append(f"cuda:{i} {torch.cuda.get_device_name(i)}")
    return "\n".join(lines) + "\n"


def run_logged(command, log: Path) -> int:
    with log.open("w") as out:
        done = subprocess.run(command, env=paths.child_environment(), stdout=out, stderr=subprocess.STDOUT)
    print(f"{' '.join(command[2:])}: exit {done.returncode} (log {log})")
    return done.returncode


def main(argv=None) -> int:
    parser = options.OneLineParser(prog="python -m roialign_suite.benchmarks.gpu", description=__doc__.splitlines()[0])
    default_out = (paths.checkout_root() or paths.work_dir()) / "benchmarks" / "records" / f"{datetime.date.today().isoformat()}-cuda"
    options.add_to_argparse(parser, options.GPU_RECORD, out=default_out)
    parser.add_argument("--skip-benchmarks", action="store_true", help="properties only")
    args = parser.parse_args(argv)
    args.out = args.roialign_out
    if not torch.cuda.is_available():
        print("no CUDA device visible (torch.cuda.is_available() is False): nothing to record", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "environment.txt").write_text(environment())
    status = run_logged(
        paths.pytest_command([paths.package_dir("properties")] + [paths.checkout_root() / "tests"] * bool(paths.checkout_root()),
                             "-m", "not fuzz", "-rs", f"--junitxml={args.out / 'properties.xml'}", "-p", "no:cacheprovider"),
        args.out / "properties.txt",
    )
    if not args.skip_benchmarks:
        status |= run_logged(
            [sys.executable, "-m", "roialign_suite.benchmarks.performance_report", "--run", "--out", str(args.out), "--",
             "--roialign-implementation=numba,torchvision-cpu,torchvision-cuda"],
            args.out / "benchmarks.txt",
        )
    return 1 if status else 0


if __name__ == "__main__":
    sys.exit(main())
