"""Secrets planted in the lab's running configs, so redaction is exercised on every run.

Values are derived from the device name alone (a hash, not randomness) so that any test
can ask `planted_secrets("r7")` without access to the running lab. Plain-text values carry
the device name and a kind prefix, which makes a leak easy to recognise in a log; hashed
and type-7 values look exactly like IOS's own.

None of these is the lab's real login password or enable secret: those are chosen at
random per Lab and never written into a config.
"""

from __future__ import annotations

import hashlib
from dataclasses import astuple, dataclass
from functools import lru_cache

# Cisco's published type-7 "encryption" key (it is a Vigenere-like XOR, not a secret).
_TYPE7_XLAT = "dsfd;kfoA,.iyewrkldJKDHSUBsgvca69834ncxv9873254k;fg87"
# IOS writes $9$ (scrypt) hashes with this base64 alphabet.
_CISCO_B64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _digest(name: str, kind: str) -> bytes:
    return hashlib.sha256(f"netchatops-lab/{name}/{kind}".encode()).digest()


def _tag(name: str, kind: str, length: int = 6) -> str:
    return _digest(name, kind).hex()[:length]


def type7_encode(plain: str, seed: int) -> str:
    """IOS `password 7` encoding of `plain`, with salt index `seed` (0-15)."""
    if not 0 <= seed <= 15:
        raise ValueError("type 7 seed must be 0-15")
    return f"{seed:02d}" + "".join(
        f"{ord(char) ^ ord(_TYPE7_XLAT[(seed + offset) % len(_TYPE7_XLAT)]):02X}"
        for offset, char in enumerate(plain)
    )


def type7_decode(encoded: str) -> str:
    seed = int(encoded[:2])
    pairs = [encoded[i : i + 2] for i in range(2, len(encoded), 2)]
    return "".join(
        chr(int(pair, 16) ^ ord(_TYPE7_XLAT[(seed + offset) % len(_TYPE7_XLAT)]))
        for offset, pair in enumerate(pairs)
    )


def _cisco_b64(data: bytes, length: int) -> str:
    number = int.from_bytes(data, "big")
    chars = []
    for _ in range(length):
        number, rest = divmod(number, 64)
        chars.append(_CISCO_B64[rest])
    return "".join(chars)


def fake_type9(name: str, kind: str) -> str:
    """A string shaped like an IOS scrypt hash ($9$<14 salt>$<43 hash>); it hashes nothing.

    A real scrypt costs ~20 ms per value, which 1,000 devices would feel, and a real hash
    of a made-up password proves nothing more to a redaction test.
    """
    salt = _cisco_b64(_digest(name, kind + "/salt"), 14)
    body = _cisco_b64(_digest(name, kind + "/hash") + _digest(name, kind + "/hash2"), 43)
    return f"$9${salt}${body}"


def _seed(name: str, kind: str) -> int:
    return _digest(name, kind + "/seed")[0] % 16


def _type7(name: str, kind: str) -> str:
    return type7_encode(f"{kind}-{name}-{_tag(name, kind)}", _seed(name, kind))


@dataclass(frozen=True)
class DeviceSecrets:
    """Every secret literal as it appears in one device's running-config."""

    enable_secret9: str
    admin_secret9: str
    ops_password7: str
    snmp_ro: str
    snmp_rw: str
    keychain_key1: str
    keychain_key2: str
    tacacs_key7: str
    tacacs_legacy_key: str
    radius_key7: str
    isakmp_key: str
    keyring_psk: str
    bgp_password7: str
    ospf_auth_key: str
    ospf_md5_key: str
    ntp_key7: str
    vty_password7: str
    # Forms the redaction once missed (issue 9 item 7), kept here so every run tests them.
    tacacs_private_key: str  # server-private ... key <value>, no type number
    radius_private_key7: str  # server-private ... key 7 <value>
    radius_pac_key7: str  # radius server block: pac key 7 <value>
    wlan_psk: str  # 9800: security wpa psk set-key ascii 0 <value>
    eem_password: str  # event manager environment _password <value>
    msdp_password: str  # ip msdp password peer <addr> <value>


@lru_cache(maxsize=1024)
def device_secrets(name: str) -> DeviceSecrets:
    return DeviceSecrets(
        enable_secret9=fake_type9(name, "enable"),
        admin_secret9=fake_type9(name, "admin"),
        ops_password7=_type7(name, "ops"),
        snmp_ro=f"snmpro-{name}-{_tag(name, 'snmpro')}",
        snmp_rw=f"snmprw-{name}-{_tag(name, 'snmprw')}",
        keychain_key1=f"kc1-{name}-{_tag(name, 'kc1')}",
        keychain_key2=f"kc2-{name}-{_tag(name, 'kc2')}",
        tacacs_key7=_type7(name, "tacacs"),
        tacacs_legacy_key=f"tacleg-{name}-{_tag(name, 'tacleg')}",
        radius_key7=_type7(name, "radius"),
        isakmp_key=f"isakmp-{name}-{_tag(name, 'isakmp')}",
        keyring_psk=f"psk-{name}-{_tag(name, 'psk')}",
        bgp_password7=_type7(name, "bgp"),
        # IOS keeps only 8 characters of an OSPF simple password and 16 of an MD5 key.
        ospf_auth_key=f"oa{_tag(name, 'ospfauth')}",
        ospf_md5_key=f"md5-{name}-{_tag(name, 'ospfmd5')}"[:16],
        ntp_key7=_type7(name, "ntp"),
        vty_password7=_type7(name, "vty"),
        tacacs_private_key=f"tacpriv-{name}-{_tag(name, 'tacpriv')}",
        radius_private_key7=_type7(name, "radpriv"),
        radius_pac_key7=_type7(name, "radpac"),
        wlan_psk=f"wpapsk-{name}-{_tag(name, 'wpapsk')}",
        eem_password=f"eempw-{name}-{_tag(name, 'eempw')}",
        msdp_password=f"msdp-{name}-{_tag(name, 'msdp')}",
    )


def planted_secrets(device_name: str) -> list[str]:
    """Every literal secret value in `device_name`'s running-config (values, not keywords)."""
    return list(astuple(device_secrets(device_name)))
