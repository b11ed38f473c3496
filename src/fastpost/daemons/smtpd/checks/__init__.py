"""smtpd's access policy: Postfix's restriction lists (SMTPD_ACCESS_README, access(5)).

Postfix counterpart: src/smtpd/smtpd_check.c, split here one concept per module:

    engine.py        RestrictionPolicy (the smtpd Policy): stages, smtpd_delay_reject,
                     defer_if_permit/_reject, warn_if_reject, logging
    lists.py         compiling restriction lists and classes; the relay rule
    registry.py      restriction names -> functions
    reply.py         reply classes and texts, enhanced-code fixes
    access.py        check_*_access and access(5) results
    generic.py       permit, reject, defer, sleep, permit_mynetworks, ...
    relay.py         address classes, reject_unauth_destination, permit_mx_backup
    hostname.py      HELO name and client name checks
    address.py       sender/recipient checks, recipient tables, login maps
    dnsbl.py         reject_rbl_client and the other DNS lists
    dnsaccess.py     check_*_{a,mx,ns}_access
    policy_service.py  check_policy_service (Postfix's policy delegation protocol)

See docs/policy.md.

Diagnostics: see each module.
"""

from fastpost.daemons.smtpd.checks.engine import RestrictionPolicy

__all__ = ["RestrictionPolicy"]
