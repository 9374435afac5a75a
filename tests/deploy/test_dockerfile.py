"""The one Dockerfile: hadolint, plus the properties the platform relies on."""

from __future__ import annotations

import json
import re

from deploy_support import ROOT, run, tool

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    ins = instructions()
    last_from = max(i for i, (word, _) in enumerate(ins) if word == "FROM")
    return ins[last_from:]


class TestDockerfile:
    def test_hadolint_passes(self) -> None:
        run(tool("hadolint"), "--failure-threshold", "info", str(DOCKERFILE))

    def test_is_multi_stage_on_slim_python_311(self) -> None:
        froms = [args for word, args in instructions() if word == "FROM"]
        assert len(froms) >= 3  # uv, build, runtime
        assert "ARG PYTHON_IMAGE=python:3.11-slim" in " ".join(
            f"{w} {a}" for w, a in instructions() if w == "ARG"
        )
        assert final_stage()[0][1].startswith("${PYTHON_IMAGE}")

    def test_installs_only_the_locked_runtime_dependencies_of_one_package(self) -> None:
        syncs = [a for w, a in instructions() if w == "RUN" and "uv sync" in a]
        assert syncs
        for cmd in syncs:
            for flag in ("--frozen", "--no-dev", '--package "tistis-${SERVICE}"'):
                assert flag in cmd, f"{flag} missing from: {cmd}"

    def test_runtime_runs_as_a_numeric_non_root_user(self) -> None:
        users = [a for w, a in final_stage() if w == "USER"]
        assert users, "no USER in the runtime stage"
        uid = users[-1].split(":")[0]
        assert uid.isdigit() and int(uid) != 0, "runAsNonRoot can only verify a numeric UID"

    def test_runtime_copies_the_virtualenv_not_the_build_tools(self) -> None:
        stage = final_stage()
        copies = [a for w, a in stage if w == "COPY"]
        assert any(a.startswith("--from=build /app/.venv") for a in copies)
        assert not any("uv" in a.split()[0] for w, a in stage if w == "RUN")

    def test_healthcheck_probes_healthz(self) -> None:
        checks = [a for w, a in final_stage() if w == "HEALTHCHECK"]
        assert len(checks) == 1 and "/healthz" in checks[0]
        assert "CMD [" in checks[0], "exec form: no shell needed in the image"

    def test_entrypoint_is_exec_form_so_sigterm_reaches_python(self) -> None:
        entry = [a for w, a in final_stage() if w == "ENTRYPOINT"]
        assert len(entry) == 1
        assert isinstance(json.loads(entry[0]), list)
        assert [a for w, a in final_stage() if w == "STOPSIGNAL"] == ["SIGTERM"]

    def test_dockerignore_keeps_local_state_out_of_the_context(self) -> None:
        lines = (ROOT / ".dockerignore").read_text().splitlines()
        assert lines[lines.index("*")] == "*", "allow-list: ignore everything first"
        allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
        assert {"pyproject.toml", "uv.lock", "libs", "services"} <= allowed
        assert not allowed & {".venv", ".git", ".env", ".infra", "tests"}
