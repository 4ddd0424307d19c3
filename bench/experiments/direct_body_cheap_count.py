"""Experiment: direct_body.py plus a byte-length token estimate instead of the o200k tokenizer
(what the daemon's memory and per-request cost would be without loading the vocabulary)."""
import os
import runpy
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import packyd.providers.packycode as provider  # noqa: E402


def cheap_estimate(request, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
    return 1


provider.count_request_tokens = cheap_estimate
sys.argv[0] = os.path.join(os.path.dirname(os.path.abspath(__file__)), "direct_body.py")
runpy.run_path(sys.argv[0], run_name="__main__")
