"""The live partner directory follows the profile folder: a profile added, changed or
removed on disk (``edigw partners add``) is seen by a running gateway without a restart;
a folder that does not load leaves the profiles in use as they were."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.config import PartnerDirectory, PartnerFolderWatch, load_partners


def _write(folder: Path, pid: str, name: str, gln: str = "3012345678901") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{pid}.toml"
    path.write_text(f'id = "{pid}"\nname = "{name}"\n\n[identifiers]\ngln = ["{gln}"]\n')
    st = path.stat()  # a distinct mtime even on a coarse clock
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_a_profile_added_on_disk_is_seen(tmp_path: Path) -> None:
    folder = tmp_path / "partners"
    _write(folder, "acme", "Acme")
    directory = load_partners(folder)
    watch = PartnerFolderWatch(directory, folder)
    assert watch.check() is False, "nothing changed"
    _write(folder, "globex", "Globex", gln="3012345678902")
    assert watch.check() is True
    assert directory.get("globex") is not None and directory.version == 1
    assert directory.by_identifier("gln", "3012345678902").id == "globex"
    assert watch.check() is False


def test_a_profile_changed_or_removed_on_disk_is_seen(tmp_path: Path) -> None:
    folder = tmp_path / "partners"
    _write(folder, "acme", "Acme")
    directory = load_partners(folder)
    holder = directory  # what the pipeline, channels and endpoints hold
    watch = PartnerFolderWatch(directory, folder)
    _write(folder, "acme", "Acme Renamed")
    assert watch.check()
    assert holder.get("acme").name == "Acme Renamed"
    (folder / "acme.toml").unlink()
    assert watch.check()
    assert holder.get("acme") is None and len(holder) == 0


def test_a_broken_file_keeps_the_profiles_in_use(tmp_path: Path) -> None:
    """A new broken profile is left out alone (recorded with its file); the others stay."""
    folder = tmp_path / "partners"
    _write(folder, "acme", "Acme")
    directory = load_partners(folder)
    watch = PartnerFolderWatch(directory, folder)
    (folder / "bad.toml").write_text("id = 'bad'\nname = \n")  # not TOML
    assert watch.check()
    assert directory.get("acme").name == "Acme" and directory.get("bad") is None
    assert [(p.partner_id, Path(p.file).name) for p in directory.problems] == [("bad", "bad.toml")]
    assert "not valid TOML" in directory.problems[0].reason
    assert watch.check() is False, "the same broken files: not loaded again"
    (folder / "bad.toml").unlink()
    _write(folder, "acme", "Acme Fixed")
    assert watch.check()
    assert directory.get("acme").name == "Acme Fixed" and directory.problems == []


def test_a_profile_broken_while_serving_stays_as_loaded_before(tmp_path: Path) -> None:
    """A profile being written (or given a bad value) keeps its last good version in use,
    while the other profiles' changes are taken."""
    folder = tmp_path / "partners"
    _write(folder, "acme", "Acme")
    _write(folder, "globex", "Globex")
    directory = load_partners(folder)
    watch = PartnerFolderWatch(directory, folder)
    (folder / "acme.toml").write_text("id = 'acme'\nname = \n")
    _write(folder, "globex", "Globex Renamed")
    assert watch.check()
    assert directory.get("acme").name == "Acme"
    assert directory.get("globex").name == "Globex Renamed"
    assert [p.partner_id for p in directory.problems] == ["acme"]


def test_replace_keeps_the_object_and_bumps_the_version() -> None:
    from gateway.config import Partner

    directory = PartnerDirectory([Partner(id="acme", name="Acme")])
    other = PartnerDirectory([Partner(id="globex", name="Globex")])
    directory.replace(other)
    assert [p.id for p in directory] == ["globex"] and directory.version == 1
    assert directory.get("acme") is None
