"""The layout holds: import-linter contract, no cycles, no oversized module, every registry entry honours
its protocol, every profile in config/profiles/ loads."""
from __future__ import annotations

import importlib
import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core.registry import MissingPackage, Registry, UnknownBackend

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = ("pipeline.backends.asr", "pipeline.backends.llm", "pipeline.backends.tts", "pipeline.backends.metadata",
            "pipeline.backends.vad", "pipeline.stages")
MAX_LINES = 600


def test_import_contract():
    """pyproject.toml's [tool.importlinter] contracts: one-way layers, independent backend families."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is not installed (make setup installs it)"
    p = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert "0 broken" in p.stdout


def test_no_oversized_module():
    big = [(str(f.relative_to(ROOT)), n) for f in sorted((ROOT / "pipeline").rglob("*.py")) + sorted((ROOT / "flows").rglob("*.py"))
           if (n := len(f.read_text().splitlines())) > MAX_LINES]
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def registries() -> list[Registry]:
    out = []
    for name in FAMILIES:
        mod = importlib.import_module(name)
        out += [v for v in vars(mod).values() if isinstance(v, Registry)]
    return out


def entries():
    return [pytest.param(r, e, id=f"{r.family}:{e.name}") for r in registries() for e in r]


def test_every_family_has_a_registry():
    fams = {r.family for r in registries()}
    for need in ("asr", "llm", "tts", "vad", "stage"):
        assert need in fams, f"no registry for {need}: {sorted(fams)}"
    assert any(f.startswith("metadata") or f in ("gender", "snr", "pitch", "speakers") for f in fams), sorted(fams)


def _protocol_methods(proto) -> list[str]:
    return [n for n, v in vars(proto).items() if not n.startswith("_") and (inspect.isfunction(v) or isinstance(v, classmethod))]


@pytest.mark.parametrize("registry,entry", entries())
def test_registry_entry_honours_protocol(registry, entry):
    """Each registered class loads (or is skipped naming the missing pip package) and has the protocol's methods."""
    miss = entry.missing()
    if miss:
        with pytest.raises(MissingPackage, match=miss[0].split("=")[0]):
            entry.load()
        pytest.skip(f"{entry.name} needs {', '.join(miss)}")
    cls = entry.load()
    assert inspect.isclass(cls), cls
    factory = "from_profile" if registry.family == "stage" else "from_config"
    assert callable(getattr(cls, factory, None)), f"{cls.__name__} has no {factory}"
    if registry.protocol is not None:
        missing = [m for m in _protocol_methods(registry.protocol) if not callable(getattr(cls, m, None))]
        assert not missing, f"{cls.__name__} lacks {missing} of {registry.protocol.__name__}"
    if registry.family == "stage":
        assert cls.name == entry.name and cls.writes in ("utterances", "instructions")
        assert cls.reads in ("sources", "texts") or cls.reads in registry, cls.reads


def test_unknown_backend_is_a_clear_error():
    reg = registries()[0]
    with pytest.raises(UnknownBackend, match="known:"):
        reg.get("no-such-backend")


def test_missing_package_names_the_pip_package():
    r = Registry("demo")
    r.add("x", "json:JSONDecoder", requires={"no_such_module_here": "no-such-dist==1.0"})
    with pytest.raises(MissingPackage, match="pip install 'no-such-dist==1.0'"):
        r.get("x")


@pytest.mark.parametrize("path", sorted((ROOT / "config" / "profiles").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_profile_loads(path):
    from pipeline.core.config import load_profile

    p = load_profile(path.stem)
    assert p.language == path.stem
    for section, reg_name in (("asr", "asr"), ("llm", "llm"), ("tts", "tts")):
        reg = next(r for r in registries() if r.family == reg_name)
        assert getattr(p, section).backend in reg, f"{path.name}: {section}.backend {getattr(p, section).backend!r} is not registered"
    assert p.ingest.vad.backend in next(r for r in registries() if r.family == "vad")
