"""Unit tests for gflow.config and gflow.paths (temp files only; the real HOME is never read)."""

from pathlib import Path

import pytest

from gflow.config import (
    Config, DaemonConfig, WebhookConfig, config_keys, load_config,
)
from gflow.errors import ConfigError
from gflow.paths import Paths


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def env(home):
    return {"HOME": str(home)}


def write_default(home: Path, text: str) -> Path:
    path = home / ".config" / "gflow" / "gflow.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write(tmp_path: Path, text: str, name: str = "gflow.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- paths -----------------------------------------------------------------------------

def test_paths_default_layout(home):
    p = Paths.from_env({"HOME": str(home)})
    assert p.config_dir == home / ".config/gflow"
    assert p.config_file == home / ".config/gflow/gflow.toml"
    assert p.shellrc == home / ".config/gflow/shellrc"
    assert p.data_dir == home / ".local/share/gflow"
    assert p.state_file == p.data_dir / "state.msgpack"
    assert p.legacy_state_file == p.data_dir / "state.json"
    assert p.wal_file == p.data_dir / "state.wal"
    assert p.journal_file == p.data_dir / "state.journal.jsonl"
    assert p.lock_file == p.data_dir / "gflowd.lock"
    assert p.logs_dir == p.data_dir / "logs"
    assert p.daemon_log == p.data_dir / "logs/gflowd.log"
    assert p.state_dir == home / ".local/state/gflow"
    assert p.history_file == home / ".local/state/gflow/shell_history"
    assert p.job_log(7) == p.logs_dir / "7.log"
    assert p.job_status(7) == p.logs_dir / "7.status"
    assert p.job_pidfile(7) == p.logs_dir / "7.pid"
    assert p.job_log_archive(7, 1700000000) == p.logs_dir / "7.log.old.1700000000"


def test_paths_xdg_variables(tmp_path, home):
    p = Paths.from_env({"HOME": str(home), "XDG_CONFIG_HOME": str(tmp_path / "c"),
                        "XDG_DATA_HOME": str(tmp_path / "d"), "XDG_STATE_HOME": str(tmp_path / "s")})
    assert p.config_file == tmp_path / "c/gflow/gflow.toml"
    assert p.state_file == tmp_path / "d/gflow/state.msgpack"
    assert p.history_file == tmp_path / "s/gflow/shell_history"


def test_paths_relative_xdg_is_ignored(home):
    p = Paths.from_env({"HOME": str(home), "XDG_DATA_HOME": "relative/dir", "XDG_CONFIG_HOME": ""})
    assert p.data_dir == home / ".local/share/gflow"
    assert p.config_dir == home / ".config/gflow"


def test_paths_ensure_dirs(home):
    p = Paths.from_env({"HOME": str(home)})
    p.ensure_dirs()
    assert p.logs_dir.is_dir() and p.state_dir.is_dir()
    assert (p.data_dir.stat().st_mode & 0o777) == 0o700


# --- defaults and sources --------------------------------------------------------------

def test_defaults_without_a_file(env):
    cfg = load_config(env=env)
    assert cfg == Config()
    assert cfg.source is None and cfg.warnings == ()
    d = cfg.daemon
    assert (d.host, d.port, d.gpus, d.gpu_allocation_strategy) == ("localhost", 59000, None, "sequential")
    assert d.gpu_poll_interval_secs == 10.0
    assert d.base_url == "http://localhost:59000"
    assert cfg.scheduler.starvation_secs == 1800 and cfg.scheduler.periodic_pass_secs == 5.0
    assert cfg.launcher.kill_grace_secs == 10.0 and cfg.launcher.memory_poll_secs == 2.0
    assert cfg.api.threads == 16 and cfg.api.max_body_bytes == 16 * 1024 * 1024
    assert cfg.projects.known_projects == () and cfg.projects.require_project is False
    assert cfg.notifications.enabled is False
    assert cfg.notifications.max_concurrent_deliveries == 16
    assert cfg.notifications.webhooks == ()
    assert cfg.shell.prompt == "gflow> " and cfg.shell.refresh_secs == 2.0 and cfg.shell.aliases == ()
    assert cfg.logging.level == "info" and cfg.logging.max_bytes == 10 * 1024 * 1024
    assert cfg.logging.backups == 5
    assert cfg.timezone is None
    hash(cfg)  # frozen all the way down


def test_default_file_is_read(env, home):
    path = write_default(home, "[daemon]\nport = 60000\n")
    cfg = load_config(env=env)
    assert cfg.daemon.port == 60000
    assert cfg.source == path


def test_explicit_path_replaces_the_default_file(env, home, tmp_path):
    write_default(home, "[daemon]\nport = 60000\nhost = 'h1'\n")
    path = write(tmp_path, "[daemon]\nport = 60001\n")
    cfg = load_config(path, env=env)
    assert cfg.daemon.port == 60001 and cfg.daemon.host == "localhost"
    assert cfg.source == path
    assert load_config(str(path), env=env).daemon.port == 60001


def test_explicit_missing_path_warns_and_uses_defaults(env, home, tmp_path):
    write_default(home, "[daemon]\nport = 60000\n")
    missing = tmp_path / "nope.toml"
    cfg = load_config(missing, env=env)
    assert cfg.warnings == (f'Config file "{missing}" not found.',)
    assert cfg.daemon.port == 59000 and cfg.source is None


# --- environment -----------------------------------------------------------------------

@pytest.mark.parametrize("var,value,attr,expected", [
    ("GFLOW_DAEMON_HOST", "10.0.0.5", ("daemon", "host"), "10.0.0.5"),
    ("GFLOW_DAEMON_PORT", "60123", ("daemon", "port"), 60123),
    ("GFLOW_DAEMON_GPUS", "0,2", ("daemon", "gpus"), (0, 2)),
    ("GFLOW_DAEMON_GPUS", "0-3", ("daemon", "gpus"), (0, 1, 2, 3)),
    ("GFLOW_DAEMON_GPUS", "all", ("daemon", "gpus"), None),
    ("GFLOW_DAEMON_GPU_ALLOCATION_STRATEGY", "Random", ("daemon", "gpu_allocation_strategy"), "random"),
    ("GFLOW_TIMEZONE", "Asia/Shanghai", ("timezone",), "Asia/Shanghai"),
    ("GFLOW_TIMEZONE", "local", ("timezone",), None),
])
def test_each_env_var(env, var, value, attr, expected):
    cfg = load_config(env={**env, var: value})
    obj = cfg
    for a in attr:
        obj = getattr(obj, a)
    assert obj == expected


def test_other_gflow_variables_are_ignored(env):
    cfg = load_config(env={**env, "GFLOW_JOB_ID": "12", "GFLOW_ARRAY_TASK_ID": "3",
                           "GFLOW_DAEMON_FOO": "x", "GFLOW_SHELL_PROMPT": "$ "})
    assert cfg == Config()


def test_empty_env_var_counts_as_unset(env):
    assert load_config(env={**env, "GFLOW_DAEMON_PORT": ""}).daemon.port == 59000


@pytest.mark.parametrize("var,value,message", [
    ("GFLOW_DAEMON_PORT", "70000",
     "daemon.port: expected an integer in 0..65535, got 70000 (from GFLOW_DAEMON_PORT)"),
    ("GFLOW_DAEMON_PORT", "abc",
     'daemon.port: expected an integer in 0..65535, got "abc" (from GFLOW_DAEMON_PORT)'),
    ("GFLOW_DAEMON_GPUS", "0,x",
     "daemon.gpus: Invalid GPU index or range: 0,x: Not a number: x (from GFLOW_DAEMON_GPUS)"),
    ("GFLOW_DAEMON_GPU_ALLOCATION_STRATEGY", "fast",
     'daemon.gpu_allocation_strategy: expected "sequential" or "random", got "fast" '
     "(from GFLOW_DAEMON_GPU_ALLOCATION_STRATEGY)"),
    ("GFLOW_TIMEZONE", "Nowhere/X",
     'timezone: unknown time zone "Nowhere/X": expected an IANA name (e.g. "Asia/Shanghai", '
     '"UTC") or "local" (from GFLOW_TIMEZONE)'),
])
def test_bad_env_values(env, var, value, message):
    with pytest.raises(ConfigError) as info:
        load_config(env={**env, var: value})
    assert str(info.value) == message


# --- precedence ------------------------------------------------------------------------

def test_precedence_cli_over_env_over_file_over_default(env, home):
    write_default(home, '[daemon]\nhost = "filehost"\nport = 1111\ngpus = [0]\n'
                        'gpu_allocation_strategy = "random"\n')
    e = {**env, "GFLOW_DAEMON_PORT": "2222", "GFLOW_DAEMON_GPUS": "1,2"}
    cfg = load_config(env=e, overrides={"daemon.gpus": [3, 1], "daemon.port": None})
    assert cfg.daemon.host == "filehost"        # file over default
    assert cfg.daemon.port == 2222              # env over file (None override = not given)
    assert cfg.daemon.gpus == (1, 3)            # CLI over env
    assert cfg.daemon.gpu_allocation_strategy == "random"
    cfg = load_config(env=e, overrides={"daemon.port": 3333,
                                        "daemon.gpu_allocation_strategy": "SEQUENTIAL"})
    assert cfg.daemon.port == 3333 and cfg.daemon.gpu_allocation_strategy == "sequential"


def test_override_can_reset_to_local_timezone_and_all_gpus(env, home):
    write_default(home, 'timezone = "UTC"\n[daemon]\ngpus = [0, 2]\n')
    cfg = load_config(env=env, overrides={"timezone": "local", "daemon.gpus": "all"})
    assert cfg.timezone is None and cfg.daemon.gpus is None


def test_bad_override(env):
    with pytest.raises(ConfigError, match=r"^daemon\.port: expected an integer in 0\.\.65535, "
                                          r"got 70000 \(from command line\)$"):
        load_config(env=env, overrides={"daemon.port": 70000})
    with pytest.raises(ConfigError, match="daemon.nope: unknown setting"):
        load_config(env=env, overrides={"daemon.nope": 1})


# --- file validation -------------------------------------------------------------------

@pytest.mark.parametrize("text,message", [
    ("[daemon]\nport = 70000\n", "daemon.port: expected an integer in 0..65535, got 70000"),
    ("[daemon]\nport = \"80\"\n", 'daemon.port: expected an integer in 0..65535, got "80"'),
    ("[daemon]\nport = true\n", "daemon.port: expected an integer in 0..65535, got true"),
    ("[daemon]\nhost = \"\"\n", 'daemon.host: expected a non-empty string, got ""'),
    ("[daemon]\ngpus = [0, -1]\n", "daemon.gpus: expected a list of GPU indices"),
    ("[daemon]\ngpus = \"3-1\"\n", "daemon.gpus: Invalid GPU index or range: 3-1: "
                                  "Start of the range cannot be bigger than the end: 3-1"),
    ("[daemon]\ngpu_allocation_strategy = \"fast\"\n",
     'daemon.gpu_allocation_strategy: expected "sequential" or "random", got "fast"'),
    ("[daemon]\ngpu_poll_interval_secs = 0\n",
     "daemon.gpu_poll_interval_secs: expected a number > 0, got 0"),
    ("[scheduler]\nstarvation_secs = -1\n", "scheduler.starvation_secs: expected a number > 0"),
    ("[launcher]\nkill_grace_secs = -0.5\n", "launcher.kill_grace_secs: expected a number >= 0"),
    ("[launcher]\nmemory_poll_secs = nan\n", "launcher.memory_poll_secs: expected a number > 0"),
    ("[api]\nthreads = 0\n", "api.threads: expected an integer in 1..1024, got 0"),
    ("[api]\nmax_body_bytes = 1.5\n", "api.max_body_bytes: expected an integer >= 1024"),
    ("[projects]\nknown_projects = \"alpha\"\n", "projects.known_projects: expected a list of strings"),
    ("[projects]\nknown_projects = [\" \"]\n", "projects.known_projects: expected non-empty project names"),
    ("[projects]\nrequire_project = \"yes\"\n", 'projects.require_project: expected true or false, got "yes"'),
    ("[notifications]\nmax_concurrent_deliveries = 0\n",
     "notifications.max_concurrent_deliveries: expected an integer >= 1, got 0"),
    ("[shell]\nrefresh_secs = 0\n", "shell.refresh_secs: expected a number > 0"),
    ("[shell]\naliases = { q = 1 }\n", "shell.aliases: expected a table of alias names"),
    ("[logging]\nlevel = \"loud\"\n", "logging.level: expected one of error, warn, info, debug, trace"),
    ("[logging]\nbackups = -1\n", "logging.backups: expected an integer >= 0, got -1"),
    ("timezone = \"Mars/Olympus\"\n", 'timezone: unknown time zone "Mars/Olympus"'),
    ("timezone = 8\n", "timezone: expected an IANA time zone name"),
    ("daemon = 5\n", "daemon: expected a table, got 5"),
])
def test_bad_file_values_name_key_and_source(tmp_path, env, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env)
    msg = str(info.value)
    assert msg.startswith(message), msg
    assert msg.endswith(f"(from {path})")
    assert "\n" not in msg


def test_malformed_toml(tmp_path, env):
    path = write(tmp_path, "garbage = [\n", "bad.toml")
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env)
    msg = str(info.value)
    assert msg.startswith(f"TOML parse error in {path}: ")
    assert len(msg.splitlines()) <= 2
    path = write(tmp_path, "[daemon]\nport = = 3\n", "bad2.toml")
    with pytest.raises(ConfigError, match=r"line 2, column"):
        load_config(path, env=env)


def test_malformed_default_file_is_an_error_too(env, home):
    write_default(home, "[daemon\n")
    with pytest.raises(ConfigError, match="TOML parse error"):
        load_config(env=env)


def test_unreadable_path_is_a_config_error(env, tmp_path):
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(ConfigError, match="Cannot read config file"):
        load_config(tmp_path / "dir.toml", env=env)


def test_not_utf8(env, tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[daemon]\nhost = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="TOML parse error"):
        load_config(path, env=env)


def test_unknown_keys_warn(tmp_path, env):
    path = write(tmp_path, 'colour = "blue"\n[daemon]\nport = 60000\nfoo = 1\n[extra]\nx = 1\n'
                           '[[notifications.webhooks]]\nurl = "http://x"\nretries = 2\n')
    cfg = load_config(path, env=env)
    assert cfg.daemon.port == 60000
    assert cfg.warnings == (
        f"unknown setting 'colour' in {path} (ignored)",
        f"unknown setting 'daemon.foo' in {path} (ignored)",
        f"unknown setting 'extra' in {path} (ignored)",
        f"unknown setting 'notifications.webhooks[0].retries' in {path} (ignored)",
    )


def test_normalisation(tmp_path, env):
    path = write(tmp_path, '''
timezone = "UTC"
[daemon]
gpus = [2, 0, 2]
gpu_allocation_strategy = "RaNdOm"
gpu_poll_interval_secs = 3
[projects]
known_projects = [" alpha ", "beta", "alpha"]
[logging]
level = "WARNING"
''')
    cfg = load_config(path, env=env)
    assert cfg.timezone == "UTC"
    assert cfg.daemon.gpus == (0, 2)
    assert cfg.daemon.gpu_allocation_strategy == "random"
    assert cfg.daemon.gpu_poll_interval_secs == 3.0
    assert isinstance(cfg.daemon.gpu_poll_interval_secs, float)
    assert cfg.projects.known_projects == ("alpha", "beta")
    assert cfg.logging.level == "warn"


def test_empty_gpu_list_is_kept_apart_from_all(tmp_path, env):
    assert load_config(write(tmp_path, "[daemon]\ngpus = []\n"), env=env).daemon.gpus == ()


def test_shell_section(tmp_path, env):
    path = write(tmp_path, '[shell]\nprompt = "g$ "\nrefresh_secs = 0.5\n'
                           '[shell.aliases]\nq = "gqueue -a"\nk = "gcancel"\n')
    cfg = load_config(path, env=env)
    assert cfg.shell.prompt == "g$ " and cfg.shell.refresh_secs == 0.5
    assert cfg.shell.aliases == (("q", "gqueue -a"), ("k", "gcancel"))


# --- webhooks --------------------------------------------------------------------------

def test_webhooks(tmp_path, env):
    path = write(tmp_path, '''
[notifications]
enabled = true
max_concurrent_deliveries = 4

[[notifications.webhooks]]
url = "https://api.example.com/gflow/events"
events = ["job_completed", "job_failed", "job_timeout"]
filter_users = ["alice", "bob"]
headers = { Authorization = "Bearer token123", X-Team = "ml" }
timeout_secs = 5
max_retries = 0

[[notifications.webhooks]]
url = "http://localhost:9000/hook"
''')
    n = load_config(path, env=env).notifications
    assert n.enabled is True and n.max_concurrent_deliveries == 4
    first, second = n.webhooks
    assert first == WebhookConfig(
        url="https://api.example.com/gflow/events",
        events=("job_completed", "job_failed", "job_timeout"),
        filter_users=("alice", "bob"),
        headers=(("Authorization", "Bearer token123"), ("X-Team", "ml")),
        timeout_secs=5, max_retries=0)
    assert first.headers_dict == {"Authorization": "Bearer token123", "X-Team": "ml"}
    assert first.wants("job_failed") and not first.wants("job_started")
    assert second == WebhookConfig(url="http://localhost:9000/hook")
    assert second.events == ("*",) and second.wants("gpu_available")
    assert second.timeout_secs == 10 and second.max_retries == 3
    hash(n)


@pytest.mark.parametrize("body,message", [
    ('events = ["*"]', "notifications.webhooks[0].url: required setting missing"),
    ('url = "ftp://x"', 'notifications.webhooks[0].url: expected an http:// or https:// URL, got "ftp://x"'),
    ('url = "http://x"\nevents = ["job_exploded"]', 'notifications.webhooks[0].events: unknown event "job_exploded"'),
    ('url = "http://x"\ntimeout_secs = 0', "notifications.webhooks[0].timeout_secs: expected an integer >= 1, got 0"),
    ('url = "http://x"\nmax_retries = -1', "notifications.webhooks[0].max_retries: expected an integer >= 0, got -1"),
    ('url = "http://x"\nheaders = { A = 1 }', "notifications.webhooks[0].headers: expected a table of header names"),
    ('url = "http://x"\nfilter_users = "alice"', "notifications.webhooks[0].filter_users: expected a list of strings"),
])
def test_bad_webhooks(tmp_path, env, body, message):
    path = write(tmp_path, f"[[notifications.webhooks]]\n{body}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env)
    assert str(info.value).startswith(message)
    assert str(info.value).endswith(f"(from {path})")


def test_webhooks_must_be_an_array_of_tables(tmp_path, env):
    path = write(tmp_path, '[notifications]\nwebhooks = "http://x"\n')
    with pytest.raises(ConfigError, match=r"^notifications\.webhooks: expected an array of tables"):
        load_config(path, env=env)


# --- 0.4.13 configs --------------------------------------------------------------------

CONFIG_0413 = '''
# Generated by gflowd init on 2026-11-24 06:08:27

timezone = "Asia/Shanghai"

[daemon]
host = "127.0.0.1"
port = 60000
gpus = [
    0,
    2,
]
gpu_allocation_strategy = "random"

[projects]
known_projects = ["ml-research", "cv-team"]
require_project = false

[notifications]
enabled = true
max_concurrent_deliveries = 16

[[notifications.webhooks]]
url = "https://api.example.com/gflow/events"
events = ["job_completed", "job_failed", "job_timeout"] # or ["*"]
filter_users = ["alice", "bob"] # optional
headers = { Authorization = "Bearer token123" } # optional
timeout_secs = 10
max_retries = 3
'''


def test_a_0413_config_parses_without_warnings(tmp_path, env):
    cfg = load_config(write(tmp_path, CONFIG_0413), env=env)
    assert cfg.warnings == ()
    assert cfg.timezone == "Asia/Shanghai"
    assert cfg.daemon == DaemonConfig(host="127.0.0.1", port=60000, gpus=(0, 2),
                                      gpu_allocation_strategy="random")
    assert cfg.daemon.base_url == "http://127.0.0.1:60000"
    assert cfg.projects.known_projects == ("ml-research", "cv-team")
    assert cfg.notifications.enabled and len(cfg.notifications.webhooks) == 1
    assert cfg.notifications.webhooks[0].headers == (("Authorization", "Bearer token123"),)


def test_minimal_0413_example(tmp_path, env):
    cfg = load_config(write(tmp_path, '[daemon]\nhost = "localhost"\nport = 59000\n'
                                      '# gpus = [0, 2]\n# gpu_allocation_strategy = "sequential"\n'),
                      env=env)
    assert cfg.daemon == DaemonConfig() and cfg.warnings == ()


def test_config_keys_cover_every_field():
    keys = config_keys()
    assert "timezone" in keys and "daemon.port" in keys and "daemon.gpu_poll_interval_secs" in keys
    assert "notifications.webhooks.url" in keys and "shell.aliases" in keys
    assert "logging.backups" in keys and "api.max_body_bytes" in keys
    import dataclasses
    for section in ("daemon", "scheduler", "launcher", "api", "projects", "notifications",
                    "shell", "logging"):
        cls = type(getattr(Config(), section))
        for f in dataclasses.fields(cls):
            assert f"{section}.{f.name}" in keys
    for f in dataclasses.fields(WebhookConfig):
        assert f"notifications.webhooks.{f.name}" in keys
