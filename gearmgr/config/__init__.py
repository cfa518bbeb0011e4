"""Configuration: every key declared once; loading, validation and errors.

Each key is one :class:`Key` in :data:`KEYS` with its parser, default, unit, help text,
GearmanManager name and scope. Loading (:func:`load_config`, :func:`parse_config`), the docs table
(:func:`config_reference_markdown`, ``python -m gearmgr.config --markdown``), ``gearmgr check`` and
``gearmgr import-ini`` all read that one declaration.

A config that cannot be used raises :class:`ConfigError`, whose text is one line in attrs' tone:
where, which key, what was expected, what was given::

    etc/gearmgr.yaml:12: functions.reverse.max_memory: expected a size like "256MiB", got "lots"
    etc/gearmgr.yaml:3: unknown key "max_job" (did you mean "max_jobs"?)
    etc/gearmgr.yaml:4:9: invalid YAML: mapping values are not allowed in this context

The package's modules, each of one concern (import the names from here):

* :mod:`~gearmgr.config.settings`: what a loaded config is (Config, FunctionSettings, ConfigError)
* :mod:`~gearmgr.config.values`: the value parsers, each value's range
* :mod:`~gearmgr.config.keys`: the KEYS table, one declaration per key
* :mod:`~gearmgr.config.build`: parsed YAML to a Config, errors with file, line and key
* :mod:`~gearmgr.config.loading`: text and files to a Config; checks on this machine
* :mod:`~gearmgr.config.reference`: the docs table and ``python -m gearmgr.config --markdown``
"""

from gearmgr.config.build import MAX_SOCKET_PATH_BYTES, KeyPath, config_from_dict
from gearmgr.config.keys import FUNCTION_KEYS, GLOBAL_KEYS, KEY, KEYS, Key, Scope
from gearmgr.config.loading import (
    DEFAULT_FILE,
    ENV_VAR,
    MAX_FILE_SIZE,
    find_config_path,
    load_config,
    parse_config,
)
from gearmgr.config.reference import config_reference_markdown, main
from gearmgr.config.settings import Config, ConfigError, FunctionSettings
from gearmgr.config.values import LOG_LEVELS, MAX_JOBS, MAX_PATH_BYTES, MAX_PROCESSES

__all__ = [
    "DEFAULT_FILE",
    "ENV_VAR",
    "FUNCTION_KEYS",
    "GLOBAL_KEYS",
    "KEY",
    "KEYS",
    "LOG_LEVELS",
    "MAX_FILE_SIZE",
    "MAX_JOBS",
    "MAX_PATH_BYTES",
    "MAX_PROCESSES",
    "MAX_SOCKET_PATH_BYTES",
    "Config",
    "ConfigError",
    "FunctionSettings",
    "Key",
    "KeyPath",
    "Scope",
    "config_from_dict",
    "config_reference_markdown",
    "find_config_path",
    "load_config",
    "main",
    "parse_config",
]
