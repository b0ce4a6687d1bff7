"""What a page costs in Python, without HTTP or load: `python -m bench.page_cpu [--profile] [PATH ...]`.

Seeds a throwaway instance as the P4 figures do (bench.seed: 200 accounts, 20,000 notifications unless
--notifications says otherwise), signs in as its admin through Flask's test client, and prints the milliseconds of
CPU per request for each path (default: the P4 pages, the deliveries searched as bench.seed says a user would). With
one client, P4's p50 is this figure plus what waitress and HTTP add; --profile prints where it goes (cProfile, by own
time).
"""
import argparse
import cProfile
import json
import os
import pstats
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    """Seed, sign in, then time (and optionally profile) each path."""
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("paths", nargs="*")
    options.add_argument("--notifications", type=int, default=20000)
    options.add_argument("--requests", type=int, default=300)
    options.add_argument("--profile", action="store_true")
    args = options.parse_args()
    with tempfile.TemporaryDirectory(prefix="smtpdesk-page-cpu-") as folder:
        env = {**os.environ, "SMTPDESK_INSTANCE_PATH": folder, "PYTHONPATH": str(ROOT)}
        seeded = subprocess.run([sys.executable, "-m", "bench.seed", "200", str(args.notifications), "25"],
                                env=env, capture_output=True, text=True, check=True)
        seed = json.loads(seeded.stdout.strip().splitlines()[-1])
        paths = args.paths or ["/accounts/", *("/deliveries/?" + urlencode({"status": "sent", "recipient": seed[term]})
                                               for term in ("search_name", "search_address"))]
        os.environ["SMTPDESK_INSTANCE_PATH"] = folder
        from webapp import create_app

        client = create_app().test_client()
        page = client.get("/auth/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
        client.post("/auth/login", data={"csrf_token": token.group(1), "username": seed["username"],
                                         "password": seed["password"]})
        headers = {"Accept-Language": "en"}
        for path in paths:
            if client.get(path, headers=headers).status_code != 200:
                raise SystemExit(f"{path}: not a 200 answer")
            for _ in range(20):  # warm: caches, the SQLite page cache, translations
                client.get(path, headers=headers)
            began = time.process_time()
            for _ in range(args.requests):
                client.get(path, headers=headers)
            print(f"{(time.process_time() - began) / args.requests * 1000:6.2f} ms CPU  {path}", flush=True)
            if args.profile:
                profile = cProfile.Profile()
                profile.enable()
                for _ in range(args.requests):
                    client.get(path, headers=headers)
                profile.disable()
                pstats.Stats(profile).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
