"""Run the project's playbooks with the project's Ansible settings under the user's own (see
ansible_env), after checking that the inventory can be read and names the hosts the run is meant for.

The playbooks folder is this module's data: it reads the playbooks, the roles' inputs.yml and the
filter plugin that checks those inputs, as Ansible does, and imports no module of the playbooks
package (whose rollout and status sit above validation, which runs validate.yml through here)."""
from __future__ import annotations

import concurrent.futures
import configparser
import fnmatch
import functools
import getpass
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from compat_matrix import interrupts, outputs
from compat_matrix.checksums import sha256_bytes
from compat_matrix.errors import UserError
from compat_matrix.lock import matrix_env

from .ansible_options import Given

# playbooks/ beside this package (in a checkout and in site-packages alike).
PLAYBOOK_DIR = Path(__file__).resolve().parent.parent / "playbooks"
# The roles and plugins: the npuenv.ascend collection, in the layout Ansible finds on a collections path
# (the project's ansible.cfg names PLAYBOOK_DIR/collections) and `make collection` builds from.
COLLECTION_DIR = PLAYBOOK_DIR / "collections" / "ansible_collections" / "npuenv" / "ascend"
COLLECTION = ".".join(COLLECTION_DIR.parts[-2:])
# The group every play of site.yml and validate.yml runs on.
FLEET_GROUP = "npu_nodes"
# Parallel connections: one per host, up to this many (Ansible's forks).
MAX_FORKS = 100

# ansible-playbook's exit codes (ansible/executor, ansible/cli): what they mean for npuenv.
HOST_FAILED, HOST_UNREACHABLE = 2, 4

HOW_TO_WRITE_AN_INVENTORY = (
    "write an inventory with your hosts in the group 'npu_nodes' and the matrix row in npuenv_row "
    f"(copy {PLAYBOOK_DIR / 'inventory' / 'example'}), then pass it: npuenv deploy -i hosts.yml "
    "(make deploy INVENTORY=hosts.yml)")


def ansible_command(name: str) -> str:
    """An Ansible CLI: the one beside this Python (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise UserError(f"{name} is not installed; run `make setup` (it installs Ansible into .venv)")
    return found


# --- the user's Ansible configuration and the project's --------------------------------------------

PROJECT_CONFIG = PLAYBOOK_DIR / "ansible.cfg"


@dataclass(frozen=True)
class Setting:
    """How Ansible takes one setting: its environment variables and its keys in an ansible.cfg
    (ansible/config/base.yml, and the ssh connection's and default callback's documentation)."""
    envs: tuple[str, ...]
    inis: tuple[tuple[str, str], ...]
    paths: bool = False   # a list of folders npuenv needs: its own first, always, then the user's
    # the user's folders when they name none (Ansible's default, which npuenv's own would otherwise replace)
    default: str = ""


def _setting(envs: str, *inis: str, paths: bool = False, default: str = "") -> Setting:
    return Setting(tuple(envs.split()), tuple(tuple(i.split("/")) for i in inis), paths, default)


# Where Ansible looks for collections when nothing names a path (ansible/config/base.yml COLLECTIONS_PATHS;
# {home} is ANSIBLE_HOME): a user's collections installed there stay found beside npuenv's own.
ANSIBLE_COLLECTIONS_DEFAULT = "{home}/collections:/usr/share/ansible/collections"

# Each setting of the project's ansible.cfg (the one place its values are written), as Ansible names it.
CONFIG_SETTINGS = {
    ("defaults", "collections_path"): _setting("ANSIBLE_COLLECTIONS_PATH", "defaults/collections_path", paths=True,
                                               default=ANSIBLE_COLLECTIONS_DEFAULT),
    ("defaults", "forks"): _setting("ANSIBLE_FORKS", "defaults/forks"),
    ("defaults", "gathering"): _setting("ANSIBLE_GATHERING", "defaults/gathering"),
    ("defaults", "host_key_checking"): _setting("ANSIBLE_HOST_KEY_CHECKING ANSIBLE_SSH_HOST_KEY_CHECKING",
                                                "defaults/host_key_checking", "ssh_connection/host_key_checking"),
    ("defaults", "retry_files_enabled"): _setting("ANSIBLE_RETRY_FILES_ENABLED", "defaults/retry_files_enabled"),
    ("defaults", "interpreter_python"): _setting("ANSIBLE_PYTHON_INTERPRETER", "defaults/interpreter_python"),
    ("defaults", "callback_result_format"): _setting("ANSIBLE_CALLBACK_RESULT_FORMAT",
                                                     "defaults/callback_result_format"),
    ("defaults", "stdout_callback"): _setting("ANSIBLE_STDOUT_CALLBACK", "defaults/stdout_callback"),
    ("defaults", "timeout"): _setting("ANSIBLE_TIMEOUT ANSIBLE_SSH_TIMEOUT", "defaults/timeout",
                                      "ssh_connection/timeout"),
    # No variable sets it: with a file of the user's, the user's file (or Ansible's default) decides.
    ("defaults", "internal_poll_interval"): _setting("", "defaults/internal_poll_interval"),
    ("ssh_connection", "pipelining"): _setting("ANSIBLE_PIPELINING ANSIBLE_SSH_PIPELINING", "defaults/pipelining",
                                               "connection/pipelining", "ssh_connection/pipelining"),
    ("ssh_connection", "ssh_args"): _setting("ANSIBLE_SSH_ARGS", "ssh_connection/ssh_args"),
}
HOST_KEY_CHECKING = CONFIG_SETTINGS["defaults", "host_key_checking"]
RETRY_PATH = _setting("ANSIBLE_RETRY_FILES_SAVE_PATH", "defaults/retry_files_save_path")
CALLBACKS = _setting("ANSIBLE_CALLBACKS_ENABLED", "defaults/callbacks_enabled")
# Where retry files go, when the user enables them and names no folder, outside a deploy (which puts
# them in its log folder): a folder of the user's, never beside the playbooks (site-packages).
DEFAULT_RETRY_DIR = "~/.ansible/retry"
# Ansible's true values (ansible.module_utils.parsing.convert_bool); anything else is false.
_TRUE = {"y", "yes", "on", "1", "true", "t"}


def user_config(environ=os.environ) -> Path | None:
    """The user's own ansible.cfg, found as ansible-playbook finds one when run in the user's folder:
    $ANSIBLE_CONFIG, ./ansible.cfg (unless the folder is world-writable), ~/.ansible.cfg,
    /etc/ansible/ansible.cfg. None when there is none (or it is the project's)."""
    given = environ.get("ANSIBLE_CONFIG")
    if given:
        path = Path(given).expanduser().absolute()
        path = path / "ansible.cfg" if path.is_dir() else path
        if not path.is_file():
            raise UserError(f"ANSIBLE_CONFIG={given}: no such file; point it at your ansible.cfg, or unset it")
        found = path
    else:
        try:
            cwd = Path.cwd()
            here = [cwd / "ansible.cfg"] if not cwd.stat().st_mode & 0o002 else []
        except OSError:   # the folder it runs in is gone: Ansible would not read one there either
            here = []
        candidates = here + [Path("~/.ansible.cfg").expanduser(), Path("/etc/ansible/ansible.cfg")]
        found = next((p.absolute() for p in candidates if p.is_file()), None)
    if found is None or found.resolve() == PROJECT_CONFIG.resolve():
        return None
    return found


def _read_config(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(inline_comment_prefixes=(";",), interpolation=None)
    try:
        parser.read_string(outputs.read_text(path, "an Ansible configuration file"), source=str(path))
    except configparser.Error as e:
        raise UserError(f"{path}: not an ansible.cfg Ansible can read ({' '.join(str(e).split())}); fix it, or "
                        f"point ANSIBLE_CONFIG at another") from None
    return parser


def _user_value(setting: Setting, environ, user: configparser.ConfigParser | None) -> tuple[str, str] | None:
    """(where, value) of a setting the user gives: their environment wins over their file."""
    for name in setting.envs:
        if name in environ:
            return f"{name}={environ[name]} in your environment", environ[name]
    for section, key in setting.inis if user is not None else ():
        if user.has_option(section, key):
            return f"{key} = {user.get(section, key)} in {user.npuenv_path}", user.get(section, key)
    return None


def _user_paths(setting: Setting, environ, user_file: Path | None, user) -> list[str]:
    """The user's folders of a path setting, absolute (Ansible reads a variable's relative to the
    folder it runs in, a file's relative to the file's folder; npuenv runs Ansible elsewhere)."""
    for name in setting.envs:
        if environ.get(name):
            return [os.path.abspath(os.path.expanduser(p)) for p in environ[name].split(os.pathsep) if p]
    for section, key in setting.inis if user is not None else ():
        if user.has_option(section, key):
            return [str(user_file.parent / Path(p).expanduser()) for p in user.get(section, key).split(os.pathsep)
                    if p]
    home = environ.get("ANSIBLE_HOME") or "~/.ansible"
    return [os.path.expanduser(p) for p in setting.default.format(home=home).split(os.pathsep) if p]


def _user(environ) -> tuple[Path | None, configparser.ConfigParser | None]:
    path = user_config(environ)
    if path is None:
        return None, None
    parsed = _read_config(path)
    parsed.npuenv_path = path
    return path, parsed


def config_env(environ=os.environ) -> dict[str, str]:
    """The ANSIBLE_* variables npuenv sets so that the user's Ansible configuration wins over the
    project's, except where npuenv needs its own:

    - with no ansible.cfg of the user's, the project's (ANSIBLE_CONFIG), under the user's ANSIBLE_*
      variables (Ansible's own precedence);
    - with one (ANSIBLE_CONFIG, ./ansible.cfg, ~/.ansible.cfg, /etc/ansible/ansible.cfg), the user's, and
      each project setting it and the environment leave unset as its variable;
    - always the project's collection (npuenv.ascend) first on the collections path, the user's after
      it (Ansible's default when they name none);
    - retry files, when enabled, in a folder of the user's (the deploy's log folder) unless they name one."""
    user_file, user = _user(environ)
    project = _read_config(PROJECT_CONFIG)
    out = {"ANSIBLE_CONFIG": str(user_file or PROJECT_CONFIG)}
    for (section, key), setting in CONFIG_SETTINGS.items():
        value = project.get(section, key)
        if setting.paths:
            mine = [str((PLAYBOOK_DIR / p).resolve()) for p in value.split(os.pathsep)]
            out[setting.envs[0]] = os.pathsep.join(mine + _user_paths(setting, environ, user_file, user))
        elif user_file and setting.envs and _user_value(setting, environ, user) is None:
            out[setting.envs[0]] = value
    if _user_value(RETRY_PATH, environ, user) is None:
        out[RETRY_PATH.envs[0]] = str(_SESSION.retry_dir or Path(DEFAULT_RETRY_DIR).expanduser())
    return out


def host_key_checking_off(environ=os.environ) -> str | None:
    """Where the user turned host key checking off (their environment or ansible.cfg); None when it is on."""
    given = _user_value(HOST_KEY_CHECKING, environ, _user(environ)[1])
    if given is None or given[1].strip().lower() in _TRUE:
        return None
    return given[0]


def forks_cap(environ=os.environ) -> int:
    """At most how many hosts at once: -f of the session, else the user's forks (ANSIBLE_FORKS or their
    ansible.cfg), else MAX_FORKS; each run takes one per host up to it."""
    if _SESSION.given.forks:
        return _SESSION.given.forks
    given = _user_value(CONFIG_SETTINGS["defaults", "forks"], environ, _user(environ)[1])
    if given is None:
        return MAX_FORKS
    where, value = given
    if not value.strip().isdigit() or int(value) < 1:
        raise UserError(f"{where}: forks must be a whole number of hosts, 1 or more; fix it, or give -f N")
    return int(value)


def ansible_env(**extra: str) -> dict[str, str]:
    """The environment of every Ansible call: the project's settings under the user's (config_env),
    the run's callbacks beside the user's, the -K password's file, and an inventory that cannot be
    parsed is an error, not an empty fleet."""
    extra = {**matrix_env(), **extra}   # the playbooks' lookups resolve in the command's matrix (--matrix)
    env = dict(os.environ)
    env.update(config_env(env))
    if CALLBACKS.envs[0] in extra:   # npuenv's callbacks (it reads their files), and the user's too
        mine = extra[CALLBACKS.envs[0]].split(",")
        given = _user_value(CALLBACKS, os.environ, _user(os.environ)[1])
        theirs = [c.strip() for c in (given[1] if given else "").split(",") if c.strip()]
        extra[CALLBACKS.envs[0]] = ",".join(mine + [c for c in theirs if c not in mine])
    if _SESSION.become_file is not None:
        env["ANSIBLE_BECOME_PASSWORD_FILE"] = str(_SESSION.become_file)
    env.update(ANSIBLE_INVENTORY_UNPARSED_FAILED="True", ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="True",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]), **extra)
    return env


# --- the options of one command's Ansible runs ------------------------------------------------------

@dataclass(frozen=True)
class _Session:
    given: Given = Given()
    retry_dir: Path | None = None
    become_file: Path | None = None
    # The session's SSH control sockets: its runs share their masters (run_playbook).
    connections: Path | None = None


_SESSION = _Session()


@contextmanager
def session(given: Given | None = None, retry_dir: Path | None = None):
    """Every Ansible call made inside it (a deploy's batches, its facts reads, its gates) gets the
    pass-through options (ansible_options), checked first (UserError); retry files go to ``retry_dir``
    unless the user names a folder. With -K the sudo password is asked once, here, and reaches every
    run through ANSIBLE_BECOME_PASSWORD_FILE: a file only this user can read, in a private folder,
    removed afterwards (never in argv, never asked again per run). Its runs share their SSH
    connections (see run_playbook); the masters are closed when it ends."""
    global _SESSION
    given = (given or Given()).checked()
    before = _SESSION
    with tempfile.TemporaryDirectory(prefix="npuenv-become-") if given.ask_become_pass else _nothing() as folder, \
            control_folder("npuenv-ssh-") as connections:
        become = None
        if folder:
            password = getpass.getpass("BECOME password (sudo on the hosts): ")
            become = Path(folder) / "password"
            fd = os.open(become, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(password + "\n")
        # Absolute: Ansible runs in the playbooks folder, where a relative one would land.
        _SESSION = _Session(given, Path(retry_dir).absolute() if retry_dir else None, become, connections)
        try:
            yield given
        finally:
            _SESSION = before


def session_options() -> Given:
    """The pass-through options of the session the caller is in (none outside one)."""
    return _SESSION.given


@contextmanager
def _nothing():
    yield None


def _check_inventory_files(path: Path) -> None:
    """Every file Ansible reads for the inventory ``path`` is a regular file of bounded size: the file
    itself or each file of the folder, and the group_vars/ and host_vars/ beside it (a FIFO blocks
    ansible-inventory forever, a device such as /dev/zero never ends)."""
    if not path.is_dir():
        try:
            outputs.check_input_file(path, "an inventory")
        except UserError as e:
            raise UserError(f"inventory {e}; {HOW_TO_WRITE_AN_INVENTORY}") from None
    folders = [path] if path.is_dir() else [path.parent / "group_vars", path.parent / "host_vars"]
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            for name in sorted(filenames):
                try:
                    outputs.check_input_file(Path(dirpath) / name, "a file Ansible reads for the inventory")
                except UserError as e:
                    raise UserError(f"inventory {path}: {e}") from None


def read_inventory(inventory: str | Path | None, limit: str | None = None) -> dict:
    """`ansible-inventory --list` of an inventory (UserError when it is missing or broken), ended
    with the command when it is interrupted."""
    if not inventory:
        raise UserError(f"no inventory given; {HOW_TO_WRITE_AN_INVENTORY}")
    path = Path(inventory)
    if not path.exists():
        raise UserError(f"inventory {path} does not exist; {HOW_TO_WRITE_AN_INVENTORY}")
    _check_inventory_files(path)
    cmd = [ansible_command("ansible-inventory"), "-i", str(path.resolve()), "--list",
           *_SESSION.given.argv("ansible-inventory")]
    if limit:
        cmd += ["--limit", limit]
    with interrupts.interruptible(f"reading the inventory {path}"):
        # A group of its own: an inventory script it runs ends with it when npuenv is interrupted. From the
        # playbooks' folder, so that group_vars and host_vars beside them count, as in ansible-playbook.
        p = interrupts.run(cmd, env=ansible_env(), cwd=PLAYBOOK_DIR, own_group=True)
    if p.returncode != 0:
        # Ansible tries every inventory plugin and reports each; the first
        # plugin's cause (with its file:line) and the final error say enough.
        text = " ".join(p.stderr.split())
        cause = text.split("<<< caused by >>>", 1)[1].split("[WARNING]")[0].strip() if "<<< caused by >>>" in text \
            else text
        final = text.rsplit("[ERROR]:", 1)[1].strip() if "[ERROR]:" in text else ""
        raise UserError(f"cannot read inventory {path}: {cause[:800]}" + (f" ({final[:300]})" if final else ""))
    return json.loads(p.stdout)


def group_members(inventory: dict, group: str) -> list[str]:
    """Hosts of a group and of its child groups, in inventory order."""
    out: list[str] = []

    def walk(name: str) -> None:
        entry = inventory.get(name) or {}
        for host in entry.get("hosts", []):
            if host not in out:
                out.append(host)
        for child in entry.get("children", []):
            walk(child)

    walk(group)
    return out


def fleet_hosts(inventory: str | Path | None, limit: str | None = None, group: str = FLEET_GROUP) -> list[str]:
    """The hosts a run would reach: the group's members after --limit."""
    return fleet(inventory, limit, group)[0]


def fleet(inventory: str | Path | None, limit: str | None = None, group: str = FLEET_GROUP) -> tuple[list[str], dict]:
    """The hosts a run would reach (the group's members after --limit, in inventory order) and every
    host's variables as the inventory sets them (not templated)."""
    everything = read_inventory(inventory)
    hostvars = everything.get("_meta", {}).get("hostvars", {})
    if not group_members(everything, group):
        groups = sorted(k for k in everything if k not in ("_meta", "all", "ungrouped"))
        raise UserError(f"inventory {inventory} has no hosts in the group '{group}' (groups: "
                        f"{', '.join(groups) or 'none'}); put the NPU servers under all.children.{group}.hosts")
    if not limit:
        return group_members(everything, group), hostvars
    hosts = group_members(read_inventory(inventory, limit), group)
    if not hosts:
        raise UserError(f"--limit {limit} matches no host of '{group}' in {inventory}; "
                        f"its hosts are: {', '.join(group_members(everything, group))}")
    return hosts, hostvars


def _role_imports(playbook: str) -> list[dict]:
    """The roles a playbook's plays run whole, as {role, tags}: its plays' roles and the tasks that
    import a role's main entry point (site.yml imports its roles, so that their specs' check can be
    turned off)."""
    found = []
    for play in yaml.safe_load((PLAYBOOK_DIR / playbook).read_text()) or []:
        for role in play.get("roles", []):
            found.append({"role": role["role"], "tags": role.get("tags", [])} if isinstance(role, dict) else
                         {"role": role, "tags": []})
        for task in play.get("tasks", []):
            imported = task.get("ansible.builtin.import_role")
            if isinstance(imported, dict) and "tasks_from" not in imported:
                found.append({"role": imported["name"], "tags": task.get("tags", [])})
    return found


def playbook_tags(playbook: str) -> set[str]:
    """The tags a playbook's roles carry (site.yml tags each role with its component)."""
    return {tag for role in _role_imports(playbook) for tag in role["tags"]} - {"always"}


def check_tags(playbook: str, tags: list[str] | None) -> None:
    """UserError naming each of ``tags`` (--tags) that no role of the playbook carries."""
    if not tags:
        return   # no playbook to read
    known = playbook_tags(playbook)
    unknown = sorted(set(tags) - known)
    if unknown:
        raise UserError(f"--tags {','.join(unknown)} matches nothing in {playbook}; "
                        f"its tags are: {', '.join(sorted(known))}")


_IMPORTS = ("ansible.builtin.import_role", "ansible.builtin.import_tasks", "import_role", "import_tasks")


def task_names(playbook: str) -> set[str]:
    """The names of the tasks of a playbook's plays and of its roles' task files (also as Ansible names
    a role's task, 'ROLE : NAME'): what --start-at-task may name."""
    names: set[str] = set()

    def walk(tasks, role: str | None) -> None:
        for task in tasks or []:
            if not isinstance(task, dict):
                continue
            # a static import is no task when the play runs: Ansible could not start at it
            if isinstance(task.get("name"), str) and not any(k in task for k in _IMPORTS):
                names.add(task["name"])
                if role:
                    names.add(f"{role} : {task['name']}")
            for key in ("block", "rescue", "always"):
                walk(task.get(key), role)

    for play in yaml.safe_load((PLAYBOOK_DIR / playbook).read_text()) or []:
        for key in ("pre_tasks", "tasks", "post_tasks"):
            walk(play.get(key), None)
    for role in playbook_roles(playbook):
        for path in sorted((role_dir(role) / "tasks").glob("*.yml")):
            walk(yaml.safe_load(path.read_text()), role)
    return names


def check_start_at_task(playbook: str, name: str) -> None:
    """UserError unless a task of the playbook matches ``name`` as Ansible matches it (the name, or a
    shell-style pattern of it): ansible-playbook itself runs nothing and exits 0 when none does."""
    names = task_names(playbook)
    if not any(n == name or fnmatch.fnmatch(n, name) for n in names):
        example = sorted(n for n in names if " : " not in n and " | " in n)[:1]
        raise UserError(f"--start-at-task {name!r}: no task of {playbook} or its roles has this name (ansible-playbook "
                        f"would run nothing); give a name as `ansible-playbook {playbook} --list-tasks` prints it"
                        + (f", e.g. {example[0]!r}" if example else ""))


# Where a run's private folder goes when TMPDIR does not suit it: an SSH
# control socket's path (folder, name, ssh's temporary suffix) must fit in a
# Unix socket address (108 bytes), and ssh reads % in it as its own tokens.
SHORT_TMP = "/tmp"
TMP_MAX = 50
# What site.yml writes into the run's folder when inventory names share one
# machine (its first play): the run was refused, not a host failure.
IDENTITY_REFUSAL = "identity-refused.txt"
# site.yml's tags for what npuenv may have checked before Ansible starts: every role's input checks
# (run_playbook), and the comparison of the hosts' identities (npuenv deploy's preflight).
INPUTS_TAG, IDENTITY_TAG = "npuenv_inputs", "npuenv_identity"
# The extra variable that turns off the roles' own argument spec checks (site.yml's imports read it).
ROLESPEC_VAR = "npuenv_rolespec_validate"
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# KEY=VALUE, several separated by spaces; a value quoted as YAML quotes it may hold spaces.
_PAIR = re.compile(r"""([^\s=]*)=("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|\S*)(?:\s+|$)""")


class _InventoryLoader(yaml.SafeLoader):
    """YAML as an inventory types it, except timestamps: a date stays the text that was typed (JSON has no date)."""


# Ansible's own tags in a vars file: !unsafe text (what npuenv writes for values nobody may template,
# validation/targets.py unsafe_yaml) and !vault text are strings to npuenv.
for _tag in ("!unsafe", "!vault"):
    _InventoryLoader.add_constructor(_tag, lambda loader, node: loader.construct_scalar(node))
_InventoryLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def _typed(option: str, key: str, raw: str):
    if raw == "":
        return ""
    try:
        return yaml.load(raw, Loader=_InventoryLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"-e {option!r}: the value of {key} is not a YAML value ({problem}); quote text as YAML "
                        f"does: {key}='...'") from None


# The first line of a file ansible-vault encrypted: Ansible decrypts it, npuenv cannot read it.
VAULT_HEADER = "$ANSIBLE_VAULT;"


def _mapping(option: str, text: str, path: Path | None = None) -> dict:
    """The variables of an @FILE (``path``) or an inline object, read as Ansible reads them: YAML or
    JSON, a mapping."""
    where = str(path) if path else f"-e {option!r}"
    try:
        data = yaml.load(text, Loader=_InventoryLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{where}{f':{mark.line + 1}' if path and mark else ''}: not YAML or JSON ({problem}); "
                        f"write the variables as {'KEY: VALUE lines' if path else 'a JSON object'}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        what = f"a {type(data).__name__}" if data is not None else "nothing"
        raise UserError(f"{where}: holds {what}, not a mapping of variable names to values; write the variables "
                        f"as {'KEY: VALUE lines' if path else 'a JSON object'}")
    return data


def _extra_vars(extra_vars: list[str] | None) -> list[tuple[str, dict | None]]:
    """Each -e option as (ansible-playbook's -e argument, the variables it sets; None for a
    vault-encrypted file, which only Ansible can read)."""
    out: list[tuple[str, dict | None]] = []
    for option in extra_vars or []:
        text = option.strip()
        if text.startswith("@"):
            if not text[1:].strip():
                raise UserError(f"-e {option!r}: give the file's path after @, e.g. -e @vars.yml")
            # A file the user names: a regular file of bounded size (a FIFO would block Ansible, /dev/zero
            # never end), named by its absolute path (ansible-playbook runs in the playbooks folder).
            path = Path(text[1:]).absolute()
            content = outputs.read_text(path, "an extra-variables file (-e @FILE)")
            out.append((f"@{path}", None if content.lstrip().startswith(VAULT_HEADER) else
                        _mapping(option, content, path)))
            continue
        if text.startswith("{"):
            out.append((option, _mapping(option, text)))
            continue
        values, pos = {}, 0
        while pos < len(text):
            m = _PAIR.match(text, pos)
            if not m or not _VAR_NAME.fullmatch(m.group(1)):
                raise UserError(f"-e {option!r}: extra variables are KEY=VALUE (several separated by spaces), "
                                f"@FILE or a JSON object, with KEY a variable name (letters, digits and _); "
                                f"e.g. -e preflight_min_free_mb=1000")
            values[m.group(1)] = _typed(option, m.group(1), m.group(2))
            pos = m.end()
        if not values:
            raise UserError("-e '': give KEY=VALUE, @FILE or a JSON object, e.g. -e preflight_min_free_mb=1000")
        try:
            out.append((json.dumps(values, allow_nan=False), values))
        except (TypeError, ValueError):
            raise UserError(f"-e {option!r}: a value YAML reads as neither text, number, bool, list nor mapping; "
                            f"quote it: KEY='...'") from None
    return out


def extra_vars_args(extra_vars: list[str] | None) -> list[str]:
    """ansible-playbook's -e arguments for npuenv's: KEY=VALUE pairs typed as the
    YAML inventory types them (1000 an int, true a bool, "1000" a string) and
    passed as one JSON object; @FILE (checked, by its absolute path) and a JSON/YAML
    object pass through."""
    return [arg for given, _ in _extra_vars(extra_vars) for arg in ("-e", given)]


def extra_vars_values(extra_vars: list[str] | None) -> dict | None:
    """The extra variables as Ansible merges them (a later -e replaces a variable an earlier one set);
    None when a vault-encrypted file is among them (what it sets is not known here)."""
    merged: dict = {}
    for _, values in _extra_vars(extra_vars):
        if values is None:
            return None
        merged.update(values)
    return merged


# What a role's tasks/inputs.yml hands the npuenv_input_problems filter: 'VARIABLE': ['KIND', VARIABLE].
_ROLE_INPUT = re.compile(r"'(\w+)': \['(\w+)', \1\]")
_ROLE_INPUT_ENTRY = re.compile(r"'\w+': \[")


def playbook_roles(playbook: str) -> list[str]:
    return [role["role"] for role in _role_imports(playbook)]


def role_dir(role: str) -> Path:
    """The folder of a role of the collection, named as the playbooks name it (npuenv.ascend.ROLE)."""
    collection, _, name = role.rpartition(".")
    if collection != COLLECTION:
        raise RuntimeError(f"role {role!r} is not one of the {COLLECTION} collection's: name it {COLLECTION}.ROLE")
    return COLLECTION_DIR / "roles" / name


def role_input_kinds(role: str) -> dict[str, str]:
    """{variable: kind} of what a role checks before it runs (its tasks/inputs.yml, the one place
    that says which variable is of which kind); {} for a role without inputs.yml."""
    path = role_dir(role) / "tasks" / "inputs.yml"
    if not path.exists():
        return {}
    text = path.read_text()
    found = _ROLE_INPUT.findall(text)
    if len(found) != len(_ROLE_INPUT_ENTRY.findall(text)):  # one not read here would go unchecked
        raise RuntimeError(f"{path}: an input not written as 'VARIABLE': ['KIND', VARIABLE]")
    return dict(found)


def role_inputs(playbook: str) -> dict[str, str]:
    """{variable: kind} of what the playbook's roles check before they run."""
    return {name: kind for role in playbook_roles(playbook) for name, kind in role_input_kinds(role).items()}


def _templated(value) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(map(_templated, value)) or any(map(_templated, value.values()))
    return isinstance(value, list) and any(map(_templated, value))


@functools.cache
def _input_filter():
    """The roles' own input check, plugins/filter/npuenv_inputs.py, loaded from its file as Ansible loads it."""
    path = COLLECTION_DIR / "plugins" / "filter" / "npuenv_inputs.py"
    spec = importlib.util.spec_from_file_location("npuenv_inputs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _by_hosts(found: dict[str, list[str]], shown: int = 5) -> list[str]:
    """{problem: hosts} as lines, each naming its first hosts."""
    return [f"{', '.join(h[:shown])}{f' and {len(h) - shown} more' if len(h) > shown else ''}: {problem}"
            for problem, h in sorted(found.items())]


def role_input_problems(playbook: str, hosts: list[str], hostvars: dict, extra: dict) -> tuple[list[str], bool]:
    """What the roles' own input checks (the collection's plugins/filter/npuenv_inputs.py) would refuse, host by host,
    before Ansible starts: each variable as the host gets it (an extra variable wins over the
    inventory's; one that neither sets keeps the role's default, which tests/unit/test_role_inputs.py
    holds to its rule). A value holding a Jinja template is left to the role, which renders it first;
    the second value says whether none was, i.e. every value the roles would check was checked here."""
    npuenv_inputs = _input_filter()
    kinds = role_inputs(playbook)
    found: dict[str, list[str]] = {}
    complete = True
    for host in hosts:
        values = {**(hostvars.get(host) or {}), **extra}
        for name in kinds.keys() & values.keys():
            if _templated(values[name]):
                complete = False
                continue
            for problem in npuenv_inputs.input_problems({name: [kinds[name], values[name]]}):
                found.setdefault(f"{problem} (set {'by -e' if name in extra else 'in the inventory'})",
                                 []).append(host)
    return _by_hosts(found), complete


def _role_defaults(role: str) -> dict:
    path = role_dir(role) / "defaults" / "main.yml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def role_spec_problems(playbook: str, hosts: list[str], hostvars: dict, extra: dict) -> tuple[list[str], bool]:
    """What the argument specs of the playbook's roles would refuse, host by host, with Ansible's own
    validator, before Ansible starts; and whether every value was checked here: not when a required
    value is missing, or a value (or the variable a default names, "{{ other }}") holds a template the
    role would render first. The playbook's own variables (site.yml hands the roles the preflight's
    facts) are the product's values, not the inventory's: not checked."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    from .role_docs import argument_spec

    plays = yaml.safe_load((PLAYBOOK_DIR / playbook).read_text()) or []
    wired = {name for play in plays for name in (play.get("vars") or {})}
    found: dict[str, list[str]] = {}
    complete = True
    for role in playbook_roles(playbook):
        options, defaults = argument_spec(role_dir(role)), _role_defaults(role)
        # Required values are the role's own check (below); every other rule is checked here.
        validator = ArgumentSpecValidator({name: {**option, "required": False} for name, option in options.items()})
        for host in hosts:
            values = {**(hostvars.get(host) or {}), **extra}
            given = {}
            for name in options.keys() - wired:
                default = defaults.get(name)
                alias = re.fullmatch(r"\{\{ *(\w+) *\}\}", default) if isinstance(default, str) else None
                source = name if name in values else alias.group(1) if alias and alias.group(1) in values else None
                if source is None:
                    continue
                if _templated(values[source]):
                    complete = False
                    continue
                given[name] = values[source]
            # What neither sets is the role's default (the spec's own: tests/unit/test_role_docs.py);
            # a required one without a default is left to the role, whose check says so in its own words.
            if any(o.get("required") and n not in given and n not in wired and n not in defaults
                   for n, o in options.items()):
                complete = False
            for problem in validator.validate(given).error_messages:
                found.setdefault(f"{role}: {problem}", []).append(host)
    return _by_hosts(found), complete


def check_role_inputs(playbook: str, hosts: list[str], hostvars: dict, extra: dict) -> tuple[bool, bool]:
    """UserError (exit 2) naming each host, variable and rule that role_input_problems or
    role_spec_problems finds; else whether every value was checked here against the roles' input
    rules, and against their argument specs (none left to the roles)."""
    problems, inputs_complete = role_input_problems(playbook, hosts, hostvars, extra)
    spec_problems, specs_complete = role_spec_problems(playbook, hosts, hostvars, extra)
    if problems or spec_problems:
        raise UserError("the roles would refuse these values, so nothing was run on any host:\n  "
                        + "\n  ".join(problems + spec_problems) + "\nfix them in the inventory or in the -e given, "
                        "then run the same command again")
    return inputs_complete, specs_complete


def playbook_command(playbook: str, inventory: str | Path, forks: int, run_dir: Path, *, check: bool = False,
                     tags: list[str] | None = None, skip_tags: list[str] | None = None, limit: str | None = None,
                     extra_vars: list[str] | None = None, ask_become_pass: bool = False,
                     connection: str) -> list[str]:
    """The ansible-playbook command line of one run whose private folder is ``run_dir``; ``connection``:
    its connection_key (hex)."""
    if not re.fullmatch(r"[0-9a-f]*", connection):
        raise ValueError(f"connection key {connection!r} is not hex")
    cmd = [ansible_command("ansible-playbook"), playbook, "-i", str(Path(inventory).resolve()), "--forks", str(forks)]
    if check:
        cmd += ["--check", "--diff"]
    if tags:
        cmd += ["--tags", ",".join(tags)]
    if skip_tags:
        cmd += ["--skip-tags", ",".join(skip_tags)]
    if limit:
        cmd += ["--limit", limit]
    if ask_become_pass:
        cmd += ["--ask-become-pass"]
    cmd += _SESSION.given.argv(playbook)   # the pass-through options of the command (session)
    # Each inventory name gets its own SSH master, so that two names never share
    # one connection (nor the host key check of the first), and so does each
    # connection key; last, because the last -e wins: the user's cannot undo it.
    return cmd + extra_vars_args(extra_vars) + ["-e", json.dumps({
        "ansible_control_path": f"%(directory)s/{{{{ (('{connection}' ~ inventory_hostname) | hash('sha1'))[:12] }}}}",
        "npuenv_identity_report": str(run_dir / IDENTITY_REFUSAL)})]


def close_masters(run_dir: Path) -> None:
    """Tell every SSH master whose control socket is in ``run_dir`` to exit."""
    sockets = [p for p in run_dir.iterdir() if p.is_socket()]

    def close(socket: Path) -> None:
        try:
            subprocess.run(["ssh", "-o", f"ControlPath={socket}", "-O", "exit", "npuenv-run"],
                           capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            pass  # ssh is gone, or the master hangs: the folder goes anyway, and the master with its persist time

    with concurrent.futures.ThreadPoolExecutor(min(32, max(1, len(sockets)))) as pool:
        list(pool.map(close, sockets))


@contextmanager
def control_folder(prefix: str):
    """A private folder for SSH control sockets (and what a run's playbook tells npuenv). Afterwards,
    also after an interrupt, the SSH masters whose sockets are in it are closed and it is removed."""
    base = tempfile.gettempdir()
    with interrupts.deferred():  # made and recorded for the cleanup as one step
        folder = Path(tempfile.mkdtemp(prefix=prefix,
                                       dir=base if len(base) <= TMP_MAX and "%" not in base else SHORT_TMP))
    try:
        yield folder
    finally:
        close_masters(folder)
        shutil.rmtree(folder, ignore_errors=True)


def run_folder():
    """A private folder for one ansible-playbook run: what the playbook tells npuenv, and its SSH
    control sockets when it runs outside a session."""
    return control_folder("npuenv-run-")


def connection_key(inventory: str | Path, extra_vars: list[str] | None) -> str:
    """What a run's SSH connections depend on besides the host's name: the inventory and the user's -e
    (either may set a host's address, user, key or known_hosts). Runs of one session with the same key
    share their masters, and only they: each SSH connection costs the controller about 0.08 CPU-s
    (bench/bench_ssh_setup.py), and a deploy makes four runs per batch. Hex: safe in a template."""
    given = json.dumps([str(Path(inventory).resolve()), list(extra_vars or [])])
    return sha256_bytes(given.encode())[:16]


def _stop(proc: subprocess.Popen) -> None:
    """Ask an ansible-playbook to stop (it ends its workers), then kill it if it does not within a minute."""
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait(proc: subprocess.Popen) -> int:
    """The exit code of an ansible-playbook whose output goes to the terminal;
    when npuenv is interrupted, it is stopped first."""
    try:
        return proc.wait()
    except BaseException:
        _stop(proc)
        raise


def _stream(proc: subprocess.Popen, log) -> int:
    """Like _wait, for an ansible-playbook whose output (stdout and stderr) goes line by line to ``log``."""
    try:
        for line in proc.stdout:
            log(line)
        return proc.wait()
    except BaseException:
        _stop(proc)
        raise


def run_playbook(playbook: str, inventory: str | Path | None, *, check: bool = False, tags: list[str] | None = None,
                 skip_tags: list[str] | None = None, limit: str | None = None, extra_vars: list[str] | None = None,
                 capture: bool = False, env: dict[str, str] | None = None, ask_become_pass: bool = False,
                 hosts: list[str] | None = None, hostvars: dict | None = None, log=None,
                 npuenv_vars: list[str] | None = None) -> subprocess.CompletedProcess:
    """ansible-playbook PLAYBOOK -i INVENTORY from the playbooks directory (ansible_env's settings), with
    one fork per host of the run up to MAX_FORKS (or the session's -f), the session's pass-through options. UserError
    when site.yml refused inventory names that reach one machine.

    ``hosts``: the hosts ``limit`` selects, and ``hostvars`` the inventory's variables (fleet()), when the
    caller has read the inventory already (an ansible-inventory costs a CPU-second; without ``hostvars``
    it is read for the check below). ``log``: called with each line of ansible-playbook's output instead
    of the terminal. ``extra_vars``: the user's -e; ``npuenv_vars``: npuenv's own (the lock, the
    artefact). Within a session, runs with the same inventory and user's -e share their SSH masters.

    The values the playbook's roles check first (their tasks/inputs.yml) are checked here too, on
    every host of the run, so that a bad one is exit 2 before Ansible starts rather than a failure
    of each host. When that checked every value, the playbook's own checks of them (tag
    INPUTS_TAG) are skipped: each costs the controller a worker per host and role; so are the roles'
    argument spec checks (ROLESPEC_VAR) when every value was also checked against every spec here.
    They stay for ansible-playbook run by hand, for a value holding a template, and for a vault file
    among the -e, whose values npuenv cannot read. ``skip_tags``: what the caller has checked itself."""
    connection, extra_vars = connection_key(inventory, extra_vars), [*(extra_vars or []), *(npuenv_vars or [])]
    extra = extra_vars_values(extra_vars)  # a bad -e is refused before anything runs
    if not hosts:
        hosts, hostvars = fleet(inventory, limit)
    check_tags(playbook, tags)
    skip_tags = list(skip_tags or [])
    if extra is not None and role_inputs(playbook):
        inputs_checked, specs_checked = check_role_inputs(
            playbook, hosts, fleet(inventory)[1] if hostvars is None else hostvars, extra)
        if inputs_checked:
            skip_tags.append(INPUTS_TAG)
        if inputs_checked and specs_checked:
            extra_vars.append(json.dumps({ROLESPEC_VAR: False}))
    try:
        # The interrupt handling outlasts the run's folder: a second signal does not cut its cleanup short.
        with interrupts.interruptible(f"ansible-playbook {playbook}"), run_folder() as folder:
            forks = min(len(hosts), forks_cap())   # -f N, or the user's own forks: at most so many at once
            cmd = playbook_command(playbook, inventory, forks, folder, check=check, tags=tags, skip_tags=skip_tags,
                                   limit=limit, extra_vars=extra_vars, ask_become_pass=ask_become_pass,
                                   connection=connection)
            run_env = ansible_env(ANSIBLE_SSH_CONTROL_PATH_DIR=str(_SESSION.connections or folder), **(env or {}))
            if capture:  # from any thread, and ended by an interrupt of the command (npuenv validate)
                return interrupts.run(cmd, cwd=PLAYBOOK_DIR, env=run_env)
            if log is not None:
                returncode = _stream(subprocess.Popen(cmd, cwd=PLAYBOOK_DIR, env=run_env, text=True, bufsize=1,
                                                      errors="replace", stdout=subprocess.PIPE,
                                                      stderr=subprocess.STDOUT), log)
            else:
                returncode = _wait(subprocess.Popen(cmd, cwd=PLAYBOOK_DIR, env=run_env, text=True))
            refusal = folder / IDENTITY_REFUSAL
            if refusal.exists():
                raise UserError(f"{refusal.read_text().strip()}; nothing was changed on any host")
            return subprocess.CompletedProcess(cmd, returncode)
    except interrupts.Interrupted as stop:
        if not capture:  # what was written is on the hosts
            stop.args = (f"ansible-playbook {playbook}: interrupted by {signal.Signals(stop.signum).name}; hosts "
                         f"may be part way through a task: run the same command again to converge them",)
        raise


def exit_code(returncode: int) -> int:
    """npuenv's exit code: 1 when a host failed or was unreachable, 2 when the run itself could not start."""
    if returncode == 0:
        return 0
    return 1 if returncode in (HOST_FAILED, HOST_UNREACHABLE) else 2
