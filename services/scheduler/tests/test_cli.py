"""The console script a Kubernetes CronJob runs."""

import json
import os
import subprocess
import sys
from pathlib import Path


class TestRunOnceCommand:
    def test_run_once_makes_one_pass_and_prints_what_it_did(self, settings):
        script = Path(sys.executable).parent / "tistis-scheduler"
        env = {**os.environ, "DATABASE_URL": settings.database_url,
               "RABBITMQ_URL": settings.rabbitmq_url, "LOG_JSON": "true"}
        done = subprocess.run([str(script), "run-once"], env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert set(summary) == {"reminders", "followups", "republished", "media_deleted", "errors"}
        assert summary["errors"] == []
