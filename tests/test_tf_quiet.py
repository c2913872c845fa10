"""galaxy_core/tf_quiet.py: the one default of TF_CPP_MIN_LOG_LEVEL, for this process and for children."""

import os
import subprocess
import sys

from galaxy_core import tf_quiet


def test_quiet_env_defaults_the_level_and_keeps_the_users(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    env = tf_quiet.quiet_env({"PATH": "/bin", "PYTHONUNBUFFERED": "1"})
    assert env == {"PATH": "/bin", "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    assert tf_quiet.quiet_env({"TF_CPP_MIN_LOG_LEVEL": "0"})["TF_CPP_MIN_LOG_LEVEL"] == "0"
    assert tf_quiet.quiet_env()["TF_CPP_MIN_LOG_LEVEL"] == "2" and "TF_CPP_MIN_LOG_LEVEL" not in os.environ


def test_quiet_tf_logs_sets_the_default_in_this_process_only_when_unset():
    code = ("import os; from galaxy_core.tf_quiet import quiet_tf_logs; quiet_tf_logs(); "
            "print(os.environ['TF_CPP_MIN_LOG_LEVEL'])")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    unset = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True)
    given = subprocess.run([sys.executable, "-c", code], env={**env, "TF_CPP_MIN_LOG_LEVEL": "1"}, cwd=root,
                           capture_output=True, text=True)
    assert (unset.stdout.strip(), given.stdout.strip()) == ("2", "1")
