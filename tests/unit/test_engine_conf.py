"""The engine setup merges its few keys into an existing containers.conf and keeps the rest,
backing the original up first; a file that already has them is left alone."""
from __future__ import annotations

import datetime as dt
import tomllib

from tests.sim import engine_conf

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
USERS = """\
# my site's settings
[containers]
log_size_max = 1048576
default_ulimits = [
  "nofile=1024:4096",
]

[engine]
runtime = "crun"   # the distribution's default
num_locks = 4096

[network]
default_subnet = "10.99.0.0/16"
"""


def test_a_missing_file_is_written(tmp_path):
    conf = tmp_path / "containers" / "containers.conf"
    assert engine_conf.apply(conf, NOW) == [f"wrote {conf} (there was none)"]
    assert tomllib.loads(conf.read_text()) == {"containers": {"default_ulimits": []},
                                               "engine": {"runtime": "runc", "cgroup_manager": "cgroupfs",
                                                          "events_logger": "file"}}


def test_the_users_file_is_backed_up_and_kept_apart_from_the_needed_keys(tmp_path):
    conf = tmp_path / "containers.conf"
    conf.write_text(USERS)
    said = engine_conf.apply(conf, NOW)
    backup = tmp_path / "containers.conf.npuenv-backup-20260102T030405Z"
    assert backup.read_text() == USERS
    assert said == [f"{conf}: your settings kept, the original saved as {backup}",
                    "  [containers] default_ulimits = [] (was ['nofile=1024:4096'])",
                    '  [engine] runtime = "runc" (was \'crun\')',
                    '  [engine] cgroup_manager = "cgroupfs" (added)',
                    '  [engine] events_logger = "file" (added)']
    merged = tomllib.loads(conf.read_text())
    assert merged == {"containers": {"log_size_max": 1048576, "default_ulimits": []},
                      "engine": {"runtime": "runc", "num_locks": 4096, "cgroup_manager": "cgroupfs",
                                 "events_logger": "file"},
                      "network": {"default_subnet": "10.99.0.0/16"}}
    assert "# my site's settings" in conf.read_text()
    # run again: nothing to do, no second backup
    assert engine_conf.apply(conf, NOW + dt.timedelta(hours=1)) == [f"{conf} already has the settings; left as it was"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["containers.conf", backup.name]


def test_a_table_the_file_lacks_is_added(tmp_path):
    conf = tmp_path / "containers.conf"
    conf.write_text('[network]\ndefault_subnet = "10.99.0.0/16"\n')
    engine_conf.apply(conf, NOW)
    merged = tomllib.loads(conf.read_text())
    assert merged["network"] == {"default_subnet": "10.99.0.0/16"} and merged["engine"]["runtime"] == "runc"
    assert merged["containers"] == {"default_ulimits": []}


def test_an_unreadable_file_is_not_touched(tmp_path):
    import pytest

    conf = tmp_path / "containers.conf"
    conf.write_text("[engine\nruntime = crun\n")
    with pytest.raises(SystemExit) as e:
        engine_conf.apply(conf, NOW)
    assert f"{conf} is not valid TOML" in str(e.value)
    assert conf.read_text() == "[engine\nruntime = crun\n" and len(list(tmp_path.iterdir())) == 1
