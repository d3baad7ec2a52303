"""Check the venv against requirements.lock: every locked package is installed at its locked version,
and every requirement of searchrl (with the extras `make venv` installs) is met by what is installed.

Run by `make venv` after installing, so a pyproject.toml change that the lock does not cover fails
there, with the package named, instead of as an import error in some test. Exit status 1 on a mismatch.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

EXTRAS = ("dev", "trl")


def locked(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            if not sep:
                raise SystemExit(f"{path}: not an exact pin: {line!r}")
            pins[canonicalize_name(name)] = version
    return pins


def installed() -> dict[str, str]:
    return {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}


def problems(pins: dict[str, str], have: dict[str, str]) -> list[str]:
    out = []
    for name, version in sorted(pins.items()):
        got = have.get(name)
        if got is None or got.split("+")[0] != version.split("+")[0]:
            out.append(f"{name}: locked {version}, installed {got or 'nothing'}")
    for text in metadata.requires("searchrl") or []:
        req = Requirement(text)
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in ("", *EXTRAS)):
            continue
        name = canonicalize_name(req.name)
        if name not in pins:
            out.append(f"{name}: required by pyproject.toml ({req}) but not in the lock; run `make lock`")
        elif name in have and not req.specifier.contains(have[name].split("+")[0], prereleases=True):
            out.append(f"{name}: pyproject.toml wants {req.specifier}, the lock has {pins[name]}; run `make lock`")
    return out


def main() -> int:
    lock = Path(sys.argv[1] if len(sys.argv) > 1 else "requirements.lock")
    found = problems(locked(lock), installed())
    for line in found:
        print(f"lock mismatch: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
