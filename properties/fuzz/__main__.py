"""``python -m roialign_suite.properties.fuzz``: fuzz the property suite for a time budget (``--help``; ``tox -e fuzz``).

    python -m roialign_suite.properties.fuzz --minutes 10                       # ours + torchvision, 1 worker
    python -m roialign_suite.properties.fuzz --minutes 30 --workers 2 --start-redis
    python -m roialign_suite.properties.fuzz --target mypkg.ops:roi_align --minutes 60 --redis redis://host:6379/0
    python -m roialign_suite.properties.fuzz --replay-only --redis redis://host:6379/0   # write what others found
    python -m roialign_suite.properties.fuzz accept FILE --reason "..."         # pin a third-party divergence

Exit status: 0 no failure found, 1 failures found (see the summary and the
corpus folder), 2 usage errors, or a worker's pytest died or errored (named
in the summary: the campaign is incomplete).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

from roialign_suite import options
from roialign_suite.properties.fuzz import worker_hooks
from roialign_suite.properties.fuzz.campaign import Campaign, Runner, default_corpus, default_files


def campaign_parser() -> argparse.ArgumentParser:
    options.importable_from_cwd()
    p = options.OneLineParser(prog="roialign-suite fuzz", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="time budget (default 10)")
    budget.add_argument("--seconds", type=float, help="time budget in seconds")
    p.add_argument("--workers", type=int, default=1, help="worker processes sharing the database (default 1)")
    target = p.add_argument_group("what to fuzz (passed to the property suite as --roialign-* options)")
    options.add_to_argparse(target, options.FUZZ)  # --target, --implementation, --device, --level-*: the suite's
    target.add_argument("-k", dest="keyword", metavar="EXPR", help="pytest -k expression selecting properties")
    target.add_argument("--files", nargs="+", metavar="FILE",
                        help=f"property files (default: {' '.join(default_files())})")
    db = p.add_argument_group("shared example database").add_mutually_exclusive_group()
    db.add_argument("--db", metavar="DIR", default=worker_hooks.DEFAULT_DATABASE,
                    help=f"directory database (default {worker_hooks.DEFAULT_DATABASE}, as pytest's dev runs)")
    db.add_argument("--redis", metavar="URL", help="Redis database shared by machines, e.g. redis://host:6379/0")
    db.add_argument("--start-redis", action="store_true",
                    help="start a private redis-server on 127.0.0.1 (free port) for this campaign's workers")
    p.add_argument("--campaign-seed", type=int, help="campaign seed (round seeds derive from it; default random)")
    p.add_argument("--examples", type=int, default=25, help="max_examples of the first round (doubles per round)")
    p.add_argument("--examples-cap", type=int, default=400, help="cap on a round's max_examples")
    p.add_argument("--progress-every", type=float, default=10.0, help="seconds between progress lines")
    p.add_argument("--grace", type=float, default=60.0,
                   help="seconds a round may run past the budget (to finish shrinking) before it is interrupted")
    p.add_argument("--replay-only", action="store_true",
                   help="generate nothing: replay the database's failures once and write them to the corpus")
    p.add_argument("--engine", choices=["hypothesis", "hypofuzz"], default="hypothesis",
                   help="hypofuzz (optional extra, non-commercial licence): run HypoFuzz for the budget, "
                        "then replay its findings into the corpus")
    return p


def pytest_args(args) -> List[str]:
    passed = options.forwarded(args)
    if args.keyword:
        passed += ["-k", args.keyword]
    return passed


def run_hypofuzz(args, campaign: Campaign) -> Optional[str]:
    """Run ``hypothesis fuzz`` (dashboard on localhost:9999) for the budget on the same tests and
    database, then return; None, or why it could not run. Its findings are harvested afterwards."""
    if shutil.which("hypothesis") is None:
        return "the hypothesis CLI is missing"
    try:
        import hypofuzz  # noqa: F401
    except ImportError:
        return "hypofuzz is not installed (pip install 'roialign-suite[hypofuzz]'; non-commercial licence)"
    runner = Runner(campaign)
    env = runner.environment(runner.workers[0], campaign.seed)
    command = ["hypothesis", "fuzz", "--host", "127.0.0.1", "-n", str(args.workers), "--",
               *campaign.files, "-p", "roialign_suite.pytest_plugin", "-p", "roialign_suite.properties.fuzz.worker_hooks",
               "--hypothesis-profile", worker_hooks.PROFILE,
               *campaign.pytest_args]
    print(f"[fuzz] {' '.join(command)} for {campaign.budget_s:.0f} s (progress: http://127.0.0.1:9999)")
    process = subprocess.Popen(command, env=env)
    try:
        process.wait(timeout=campaign.budget_s)
    except subprocess.TimeoutExpired:
        process.terminate()
        process.wait()
    return None


def main_campaign(argv: List[str]) -> int:
    args = campaign_parser().parse_args(argv)
    budget = args.seconds if args.seconds is not None else 60 * (args.minutes if args.minutes is not None else 10)
    campaign = Campaign(
        budget_s=budget, workers=args.workers, files=args.files or default_files(), pytest_args=pytest_args(args),
        database=args.redis or args.db, corpus=Path(args.roialign_corpus or default_corpus()), out=args.roialign_out,
        seed=args.campaign_seed, first_examples=args.examples, max_examples=args.examples_cap, progress_every_s=args.progress_every,
        grace_s=args.grace, replay_only=args.replay_only,
    )
    server = None
    if args.start_redis:
        from roialign_suite.properties.fuzz.redis_server import LocalRedis

        server = LocalRedis().start()
        campaign.database = server.url
        print(f"[fuzz] started redis-server on {server.url} (stopped at the end)")
    try:
        if args.engine == "hypofuzz":
            problem = run_hypofuzz(args, campaign)
            if problem:
                print(f"[fuzz] --engine hypofuzz: {problem}", file=sys.stderr)
                return 2
            campaign.replay_only = True
        runner = Runner(campaign)
        totals = runner.run()
    finally:
        if server is not None:
            server.stop()
    if runner.died:
        print(f"[fuzz] the campaign is incomplete: {'; '.join(runner.died)}", file=sys.stderr)
        return 2
    if totals.rounds == 0:
        return 2
    return 1 if totals.findings else 0


def main_accept(argv: List[str]) -> int:
    p = argparse.ArgumentParser(prog="roialign-suite fuzz accept",
                                description="Mark a found case as a known, accepted divergence of a third-party "
                                            "implementation (rewrites the file; move it to corpus/known_divergences/)")
    p.add_argument("file", type=Path)
    p.add_argument("--reason", required=True, help="why this divergence is accepted")
    p.add_argument("--implementation", help="the diverging implementation (default: the one found failing)")
    args = p.parse_args(argv)
    from roialign_suite.properties.fuzz.corpus import accept

    marked = accept(args.file, args.reason, args.implementation)
    print(f"{args.file}: marked as a known divergence of {', '.join(sorted(set(marked)))}; still diverges as recorded")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["accept"]:
        return main_accept(argv[1:])
    return main_campaign(argv)


if __name__ == "__main__":
    sys.exit(main())
