"""local(8)'s configuration, read and checked once per process.

Postfix counterpart: the parameter tables and local_mask_init() of src/local/local.c

LocalSettings.from_config(cfg, service) reads every parameter local uses into typed
fields (lists split, masks decoded, accounts looked up), so that a bad value is a
fatal error naming the file and line when the process starts, not a failed delivery.
``forward_path``, ``mailbox_command``, ``mailbox_command_maps`` and ``luser_relay`` are
taken raw: their ``$name`` forms are delivery attributes, expanded per delivery
(fastpost.mail.mac_expand), as in Postfix.

Diagnostics: ConfigError (file and line) for an unknown mask name, an unknown
default_privs account or one with root privileges, a mailbox_size_limit below
message_size_limit, no usable mailbox lock method.
"""

from __future__ import annotations

import pwd
from dataclasses import dataclass

from fastpost.mail.config import ConfigError
from fastpost.mail.maps import MapList
from fastpost.mail.maps.search import local_domain_predicate
from fastpost.mail.mbox import lock_mask

# Expansion types (where a destination came from): allow_mail_to_commands/_files.
EXPAND_ALIAS = 1
EXPAND_FWD = 2
EXPAND_INCL = 4
_EXPAND_NAMES = {"alias": EXPAND_ALIAS, "forward": EXPAND_FWD, "include": EXPAND_INCL}

# prepend_delivered_header contexts.
HDR_CMD = 1
HDR_FILE = 2
HDR_FWD = 4
_HDR_NAMES = {"command": HDR_CMD, "file": HDR_FILE, "forward": HDR_FWD}

# propagate_unmatched_extensions classes local cares about.
EXT_PROP_ALIAS = 1
EXT_PROP_FORWARD = 2
EXT_PROP_INCLUDE = 4
_EXT_NAMES = {"alias": EXT_PROP_ALIAS, "forward": EXT_PROP_FORWARD, "include": EXT_PROP_INCLUDE,
              "canonical": 0, "virtual": 0, "generic": 0}

#: Every parameter local declares to the skeleton (type-checked at start).
PARAMS = (
    "alias_maps", "allow_mail_to_commands", "allow_mail_to_files", "home_mailbox",
    "mail_spool_directory", "mailbox_transport", "mailbox_transport_maps",
    "fallback_transport", "fallback_transport_maps", "mailbox_size_limit",
    "message_size_limit", "mailbox_delivery_lock", "deliver_lock_attempts",
    "deliver_lock_delay", "stale_lock_time", "recipient_delimiter", "owner_request_special",
    "expand_owner_alias", "reset_owner_alias", "frozen_delivered_to",
    "prepend_delivered_header", "propagate_unmatched_extensions", "default_privs",
    "command_time_limit", "command_expansion_filter",
    "forward_expansion_filter", "execution_directory_expansion_filter",
    "export_environment", "local_command_shell", "strict_mailbox_ownership",
    "require_home_directory", "duplicate_filter_limit", "biff", "myorigin", "myhostname",
    "mail_name", "local_transport", "enable_original_recipient", "line_length_limit",
    "delay_logging_resolution_limit",
)


def _mask(cfg, name: str, table: dict) -> int:
    mask = 0
    for item in cfg.get_list(name):
        bit = table.get(item.lower())
        if bit is None:
            raise ConfigError(f'{cfg.where(name)}: unknown {name} value "{item}" in '
                              f'"{cfg.get(name)}"')
        mask |= bit
    return mask


def _myorigin(cfg) -> str:
    value = cfg.get("myorigin").strip()
    if value.startswith("/"):  # Debian: myorigin = /etc/mailname
        try:
            with open(value) as fh:
                value = fh.readline().strip()
        except OSError:
            value = cfg.get("myhostname")
    return value.lower()


@dataclass
class LocalSettings:
    service: str
    alias_maps: MapList
    allow_commands: int
    allow_files: int
    forward_path: str  # raw
    home_mailbox: str
    mail_spool_directory: str
    mailbox_command: str  # raw
    mailbox_command_maps: MapList | None
    mailbox_transport: str
    mailbox_transport_maps: MapList | None
    fallback_transport: str
    fallback_transport_maps: MapList | None
    luser_relay: str  # raw
    mailbox_size_limit: int
    lock_mask: int
    lock_attempts: int
    lock_delay: float
    stale_lock_time: float
    delimiters: str
    owner_request_special: bool
    expand_owner_alias: bool
    reset_owner_alias: bool
    frozen_delivered_to: bool
    header_mask: int
    ext_prop: int
    default_uid: int
    default_gid: int
    command_time_limit: int
    exec_directory: str
    command_filter: str
    forward_filter: str
    exec_filter: str
    export_environment: list
    local_command_shell: str
    strict_mailbox_ownership: bool
    require_home_directory: bool
    duplicate_filter_limit: int
    biff: bool
    myorigin: str
    myhostname: str
    mail_name: str
    local_transport: str  # transport part of local_transport
    original_recipient: bool
    line_limit: int
    resolution: int
    is_local: object  # domain -> bool

    @classmethod
    def from_config(cls, cfg, service: str) -> "LocalSettings":
        def maps(name: str) -> MapList | None:
            return MapList.from_param(cfg, name) if cfg.get_list(name) else None

        size_limit = cfg.get_int("mailbox_size_limit")
        if size_limit and size_limit < cfg.get_int("message_size_limit"):
            raise ConfigError(f"{cfg.where('mailbox_size_limit')}: main.cf configuration error: "
                              "mailbox_size_limit is smaller than message_size_limit")
        try:
            locks = lock_mask(cfg.get_list("mailbox_delivery_lock"))
        except ValueError as exc:
            raise ConfigError(f"{cfg.where('mailbox_delivery_lock')}: {exc}") from None
        if not locks:
            raise ConfigError(f"{cfg.where('mailbox_delivery_lock')}: parameter "
                              "mailbox_delivery_lock specifies no applicable mailbox locking method")
        privs_name = cfg.get("default_privs")
        try:
            pw = pwd.getpwnam(privs_name)
        except KeyError:
            raise ConfigError(f"{cfg.where('default_privs')}: unknown default_privs user: "
                              f"{privs_name}") from None
        if pw.pw_uid == 0 or pw.pw_gid == 0:
            raise ConfigError(f"{cfg.where('default_privs')}: default_privs user {privs_name} "
                              "has privileged user or group ID")
        transport = cfg.get("local_transport").partition(":")[0].strip() or "local"
        return cls(
            service=service,
            alias_maps=MapList.from_param(cfg, "alias_maps"),
            allow_commands=_mask(cfg, "allow_mail_to_commands", _EXPAND_NAMES),
            allow_files=_mask(cfg, "allow_mail_to_files", _EXPAND_NAMES),
            forward_path=cfg.raw("forward_path") or "",
            home_mailbox=cfg.get("home_mailbox").strip(),
            mail_spool_directory=cfg.get("mail_spool_directory").strip(),
            mailbox_command=(cfg.raw("mailbox_command") or "").strip(),
            mailbox_command_maps=maps("mailbox_command_maps"),
            mailbox_transport=cfg.get("mailbox_transport").strip(),
            mailbox_transport_maps=maps("mailbox_transport_maps"),
            fallback_transport=cfg.get("fallback_transport").strip(),
            fallback_transport_maps=maps("fallback_transport_maps"),
            luser_relay=(cfg.raw("luser_relay") or "").strip(),
            mailbox_size_limit=size_limit,
            lock_mask=locks,
            lock_attempts=max(1, cfg.get_int("deliver_lock_attempts")),
            lock_delay=float(cfg.get_time("deliver_lock_delay")),
            stale_lock_time=float(cfg.get_time("stale_lock_time")),
            delimiters=cfg.get("recipient_delimiter"),
            owner_request_special=cfg.get_bool("owner_request_special"),
            expand_owner_alias=cfg.get_bool("expand_owner_alias"),
            reset_owner_alias=cfg.get_bool("reset_owner_alias"),
            frozen_delivered_to=cfg.get_bool("frozen_delivered_to"),
            header_mask=_mask(cfg, "prepend_delivered_header", _HDR_NAMES),
            ext_prop=_mask(cfg, "propagate_unmatched_extensions", _EXT_NAMES),
            default_uid=pw.pw_uid,
            default_gid=pw.pw_gid,
            command_time_limit=cfg.get_time("command_time_limit"),
            exec_directory=cfg.raw("command_execution_directory") or "",
            command_filter=cfg.get("command_expansion_filter"),
            forward_filter=cfg.get("forward_expansion_filter"),
            exec_filter=cfg.get("execution_directory_expansion_filter"),
            export_environment=cfg.get_list("export_environment"),
            local_command_shell=cfg.get("local_command_shell").strip(),
            strict_mailbox_ownership=cfg.get_bool("strict_mailbox_ownership"),
            require_home_directory=cfg.get_bool("require_home_directory"),
            duplicate_filter_limit=cfg.get_int("duplicate_filter_limit"),
            biff=cfg.get_bool("biff"),
            myorigin=_myorigin(cfg),
            myhostname=cfg.get("myhostname"),
            mail_name=cfg.get("mail_name"),
            local_transport=transport,
            original_recipient=cfg.get_bool("enable_original_recipient"),
            line_limit=cfg.get_int("line_length_limit"),
            resolution=cfg.get_int("delay_logging_resolution_limit"),
            is_local=local_domain_predicate(cfg),
        )
