"""`npuenv deploy`'s progress (the collection's plugins/callback/npuenv_progress.py): a line per finished
task, and a task that runs long says, while it runs, on which hosts it is still running."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid

import pytest

from tests.conftest import ROOT
from tests.unit.test_playbook_plugins import plugin

NEVER_S = 60   # a safety net only: a test that waits this long has failed


class Clock:
    def __init__(self):
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class Lines:
    def __init__(self):
        self.lines, self.seen = [], threading.Event()

    def display(self, text, *a, **k):
        self.lines.append(text)
        self.seen.set()


class Named:
    def __init__(self, name):
        self.name = name

    def get_name(self):
        return self.name


class Task(Named):
    """An Ansible task as the callback sees it: its name and its identity (Task._uuid)."""
    def __init__(self, name):
        super().__init__(name)
        self._uuid = uuid.uuid4().hex


class Result:
    def __init__(self, host, **result):
        self._host, self._result = Named(host), result


@pytest.fixture
def progress(monkeypatch):
    module = plugin("callback", "npuenv_progress")
    clock = Clock()
    monkeypatch.setattr(module, "time", clock)
    callback = module.CallbackModule()
    callback._display = Lines()
    yield module, callback, clock
    callback._stop.set()


def started(callback, task: str, hosts: list[str]) -> None:
    callback.v2_playbook_on_task_start(Task(task), False)
    for h in hosts:
        callback.v2_runner_on_start(Named(h), None)


def test_a_long_task_names_the_hosts_it_still_runs_on(progress):
    module, callback, clock = progress
    started(callback, "Python stack | Install the wheelhouse", ["n1", "n2", "n3"])
    clock.now += module.HEARTBEAT_S - 1
    callback.still_running()
    assert callback._display.lines == []               # not long yet: nothing said
    callback.v2_runner_on_ok(Result("n2", changed=True))
    clock.now += 1
    callback.still_running()
    assert callback._display.lines == [
        f"{module.HEARTBEAT_S:7.1f} s  Python stack | Install the wheelhouse  (still running on n1, n3)"]
    callback.v2_runner_on_ok(Result("n1"))
    callback.v2_runner_on_skipped(Result("n3"))
    clock.now += 5
    callback.still_running()                           # every host is done: nothing more to say
    started(callback, "CANN | Install the toolkit", [])
    assert callback._display.lines[1:] == [
        f"{module.HEARTBEAT_S + 5:7.1f} s  Python stack | Install the wheelhouse  (changed 1, ok 1, skipped 1)"]


def test_many_hosts_still_running_are_named_up_to_a_few_and_counted(progress):
    module, callback, clock = progress
    hosts = [f"n{i}" for i in range(module.NAMED + 3)]
    started(callback, "Driver | Install", hosts)
    clock.now += module.HEARTBEAT_S
    callback.still_running()
    assert callback._display.lines[-1].endswith(f"(still running on {', '.join(hosts[:module.NAMED])} and 3 more)")


def test_the_heartbeat_speaks_on_its_own_while_the_task_runs_and_stops_with_the_play(progress, monkeypatch):
    module, callback, clock = progress
    monkeypatch.setattr(module, "HEARTBEAT_S", 0.01)
    started(callback, "Driver | Install", ["n1"])
    clock.now += 1
    assert callback._display.seen.wait(NEVER_S)
    assert "Driver | Install  (still running on n1)" in callback._display.lines[0]
    monkeypatch.setattr(module.DefaultCallback, "v2_playbook_on_stats", lambda self, stats: None)  # the recap
    callback.v2_playbook_on_stats(None)
    callback._heart.join(NEVER_S)
    assert not callback._heart.is_alive()


def test_a_task_announced_once_per_host_is_one_line(progress):
    module, callback, clock = progress
    flush = Task("Driver | Apply pending reboots")
    for _ in range(3):   # ansible-core 2.19 announces a flush_handlers task for each host
        callback.v2_playbook_on_task_start(flush, False)
    callback.v2_playbook_on_handler_task_start(Task("Driver | Reboot"))
    callback.v2_runner_on_ok(Result("n1", changed=True))
    callback.v2_runner_on_ok(Result("n2", changed=True))
    started(callback, "Driver | Check health", ["n1"])    # two tasks of one name are two lines
    started(callback, "Driver | Check health", ["n1"])
    started(callback, "CANN | Install", [])
    assert callback._display.lines == ["    0.0 s  Driver | Apply pending reboots  (no host)",
                                       "    0.0 s  handler: Driver | Reboot  (changed 2)",
                                       "    0.0 s  Driver | Check health  (no host)",
                                       "    0.0 s  Driver | Check health  (no host)"]


PLAY = """- hosts: all
  gather_facts: false
  tasks:
    - name: Driver | Install
      ansible.builtin.command: "true"
      notify: Driver | Reboot
    - name: Driver | Apply pending reboots
      ansible.builtin.meta: flush_handlers
    - name: Driver | Check health
      ansible.builtin.command: "true"
      changed_when: false
  handlers:
    - name: Driver | Reboot
      ansible.builtin.command: "true"
"""


def test_ansible_playbooks_progress_on_many_hosts_has_a_line_per_task(tmp_path):
    """The callback in a real ansible-playbook run: a task on many hosts, a handler flush among them, is one
    line each, whichever callbacks ansible-core calls for them."""
    hosts = [f"n{i}" for i in range(5)]
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n" + "".join(
        f"    {h}: {{ansible_connection: local, ansible_python_interpreter: {sys.executable}}}\n" for h in hosts))
    (tmp_path / "play.yml").write_text(PLAY)
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")   # none of the machine's settings
    env = {**os.environ, "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg"), "ANSIBLE_STDOUT_CALLBACK": "npuenv.ascend.npuenv_progress",
           "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "playbooks" / "collections"), "ANSIBLE_LOCAL_TEMP": str(tmp_path)}
    p = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "hosts.yml",
                        "-f", "5", "play.yml"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = [line.split(" s  ", 1)[1] for line in p.stdout.splitlines() if " s  " in line]
    assert lines == ["Driver | Install  (changed 5)", "Driver | Apply pending reboots  (no host)",
                     "handler: Driver | Reboot  (changed 5)", "Driver | Check health  (ok 5)"], p.stdout
