"""`requires-python` admits exactly the Pythons the locked dependencies ship for: every package of
uv.lock that is compiled has a wheel for each admitted minor version (its own or a stable-ABI
one), and the next minor after the cap lacks some. Raise the cap when the lock gains them."""

from __future__ import annotations

import re
import tomllib

from deploy_support import ROOT
from packaging.specifiers import SpecifierSet

LOCK = tomllib.loads((ROOT / "uv.lock").read_text())
REQUIRES = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])


def wheel_minors() -> dict[str, tuple[set[int], int | None]]:
    """Compiled package -> (minors with their own wheel, lowest stable-ABI minor or None)."""
    out = {}
    for package in LOCK["package"]:
        files = [w["url"].rsplit("/", 1)[1] for w in package.get("wheels", [])]
        if not files or any(f.endswith("-none-any.whl") for f in files):
            continue
        own = {int(m) for f in files for m in re.findall(r"-cp3(\d+)-cp3\d+t?-", f)}
        abi3 = [int(m) for f in files for m in re.findall(r"-cp3(\d+)-abi3-", f)]
        if own or abi3:
            out[package["name"]] = (own, min(abi3) if abi3 else None)
    return out


def shipped(minor: int) -> list[str]:
    """Compiled packages without a wheel for Python 3.<minor>."""
    return [name for name, (own, abi3) in wheel_minors().items()
            if minor not in own and (abi3 is None or abi3 > minor)]


def admitted() -> list[int]:
    return [m for m in range(8, 30) if REQUIRES.contains(f"3.{m}.0")]


class TestRequiresPython:
    def test_every_member_declares_the_same_range(self) -> None:
        for path in [ROOT / "pyproject.toml", *ROOT.glob("*/*/pyproject.toml"),
                     ROOT / "sandbox" / "pyproject.toml"]:
            project = tomllib.loads(path.read_text()).get("project", {})
            if "requires-python" in project:
                assert SpecifierSet(project["requires-python"]) == REQUIRES, path

    def test_the_lock_resolves_the_same_range(self) -> None:
        assert SpecifierSet(LOCK["requires-python"].replace(" ", "")) == REQUIRES

    def test_each_admitted_python_has_a_wheel_of_every_compiled_dependency(self) -> None:
        assert admitted(), REQUIRES
        for minor in admitted():
            assert not shipped(minor), f"3.{minor}: no wheel of {shipped(minor)}"

    def test_the_cap_is_where_the_wheels_end(self) -> None:
        assert shipped(max(admitted()) + 1), "every dependency ships the next Python: raise the cap"
