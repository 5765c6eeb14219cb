"""The dataset builder's output is byte for byte what it was: bench/dataset_identity.py builds the training and
validation sets, their sidecars and the report (less its timings) from jsonFiles/ and the recorded market logs, and
compares their sha256 with the digests checked in beside the fixtures. A change of the output that is meant is
recorded with `bench/dataset_identity.py --write-digests` (and said in the commit); any other fails here."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

from tests.helpers.paths import FIXTURES, REPO

BENCH = REPO / "bench" / "dataset_identity.py"
DIGESTS = FIXTURES / "dataset" / "identity_digests.json"


def test_every_case_recorded_has_output_of_its_own():
    digests = json.loads(DIGESTS.read_text())
    empty = hashlib.sha256(b"").hexdigest()
    assert len(digests) == 20  # 4 cases x (2 sets, 2 sidecars, the report)
    assert empty not in digests.values()  # every case makes both sets: no file is compared as merely absent
    assert len(set(digests.values())) == len(digests)


def test_the_builder_output_matches_the_recorded_digests(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IBEX_"))},
           "PYTHON_DOTENV_DISABLED": "1"}
    done = subprocess.run([sys.executable, str(BENCH), "--check"], cwd=tmp_path, env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "20/20 files match the digests" in done.stdout
