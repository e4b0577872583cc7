"""Make pyas2lib's crypto backend (oscrypto 1.3.0) work on this system's OpenSSL 3.

``prepare()`` must run before ``oscrypto`` (and so ``pyas2lib``) is first imported; the AS2
modules call it at import time. It is idempotent and does two narrow things:

1. **Version detection.** oscrypto 1.3.0 (the last release on PyPI) reads the libcrypto
   version with the pattern ``\\d\\.\\d\\.\\d[a-z]*``: one digit per part, so "OpenSSL 3.0.19"
   does not match and the import fails with "Error detecting the version of libcrypto"
   (wbond/oscrypto#75, #78). Upstream fixed it in commit d5f3437 (PR #76) by reading
   ``\\d+`` for the last part, never released. We apply exactly that change: the module
   oscrypto would load (``_libcrypto_cffi`` or ``_libcrypto_ctypes``, as ``oscrypto.ffi()``
   says) is compiled from its own source with the one pattern replaced and put in
   ``sys.modules`` under its own name. When the source does not hold the old pattern (a fixed
   oscrypto), nothing is replaced.

2. **Legacy algorithms.** OpenSSL 3 keeps RC2, RC4 and DES in its "legacy" provider, which
   is not loaded by default; oscrypto only loads it when ``OSSL_PROVIDER_available`` already
   says yes, so RC2 (PKCS#12 files from older tools, ``rc2_128_cbc`` messages) fails.
   We load the "default" provider and then the "legacy" one in libcrypto's default context
   (loading any provider explicitly stops OpenSSL from loading "default" on its own, hence
   both). Private keys in PKCS#12 files are read with ``cryptography`` anyway (see
   ``keys.py``), so an OpenSSL without the legacy module only loses RC2/RC4 messages.

Nothing is written to site-packages: the fix lives here, with its test
(``tests/unit/test_as2_compat.py``), and goes away when oscrypto is upgraded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import sys
import threading

import structlog

log = structlog.get_logger("edigw.as2")

_OLD_PATTERN = "'\\\\b(\\\\d\\\\.\\\\d\\\\.\\\\d[a-z]*)\\\\b'"
_NEW_PATTERN = "'\\\\b(\\\\d\\\\.\\\\d\\\\.\\\\d+[a-z]*)\\\\b'"
_lock = threading.Lock()
_state: dict[str, object] = {}


def prepare() -> None:
    """Apply the version-detection fix and load OpenSSL's legacy provider (once)."""
    with _lock:
        if _state.get("done"):
            return
        _state["legacy_provider"] = _load_providers()
        _state["patched_module"] = _patch_version_detection()
        _bound_decompression()
        _state["done"] = True


#: No AS2 message decompresses to more than this (``set_decompression_limit``): pyas2lib
#: would inflate a compressed part whole, before any signature is checked, so a 300 KB body
#: could take gigabytes of memory.
_limit = {"bytes": 200 * 1024 * 1024}


def set_decompression_limit(max_bytes: int) -> None:
    """At most ``max_bytes`` come out of a compressed part (the AS2 ``max_size``)."""
    _limit["bytes"] = max_bytes


def bounded_decompress(compressed_data: bytes) -> bytes:
    """pyas2lib's ``decompress_message`` with a ceiling: CMS compressed-data (zlib)
    inflated up to the limit; more raises pyas2lib's ``DecompressionError``."""
    import zlib

    from asn1crypto import cms
    from pyas2lib.exceptions import DecompressionError

    limit = _limit["bytes"]
    try:
        info = cms.ContentInfo.load(compressed_data)
        if info["content_type"].native != "compressed_data":
            raise DecompressionError("Compressed data not found in ASN.1 ")
        content = info["content"]
        algorithm = content["compression_algorithm"]["algorithm"].native
        if algorithm != "zlib":
            raise DecompressionError(f"unsupported compression algorithm {algorithm}")
        data = content["encap_content_info"]["content"].native or b""
        inflater = zlib.decompressobj()
        out = inflater.decompress(data, limit + 1)
    except DecompressionError:
        raise
    except Exception as exc:
        raise DecompressionError(f"Decompression failed with cause: {exc}") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise DecompressionError(f"compressed content inflates to more than {limit} bytes")
    return out


def _bound_decompression() -> None:
    import pyas2lib.as2
    import pyas2lib.cms

    pyas2lib.cms.decompress_message = bounded_decompress
    pyas2lib.as2.decompress_message = bounded_decompress  # imported there by name


def legacy_provider_loaded() -> bool:
    """Whether ``prepare()`` loaded OpenSSL's legacy provider (RC2, RC4, DES)."""
    return bool(_state.get("legacy_provider"))


def patched_module() -> str | None:
    """The oscrypto module ``prepare()`` compiled with the fixed pattern, if any."""
    value = _state.get("patched_module")
    return value if isinstance(value, str) else None


def _libcrypto_path() -> str | None:
    # The same lookup oscrypto makes (oscrypto._ffi.get_library): the same shared object,
    # hence the same default library context.
    return ctypes.util.find_library("crypto")


def _load_providers() -> bool:
    path = _libcrypto_path()
    if not path:
        return False
    try:
        lib = ctypes.CDLL(path)
        load = lib.OSSL_PROVIDER_load
    except (OSError, AttributeError):  # not OpenSSL 3: nothing to do
        return False
    load.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    load.restype = ctypes.c_void_p
    if not load(None, b"default"):
        log.warning("as2_openssl_provider_missing", provider="default")
        return False
    if not load(None, b"legacy"):
        log.warning("as2_openssl_provider_missing", provider="legacy",
                    effect="RC2/RC4 encrypted messages cannot be decrypted")
        return False
    return True


def _patch_version_detection() -> str | None:
    import oscrypto  # the package itself loads no library

    name = f"oscrypto._openssl._libcrypto_{oscrypto.ffi()}"
    if name in sys.modules:
        return None  # already imported (fine, or it would have raised)
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.origin is None:
        return None
    with open(spec.origin, encoding="utf-8") as fh:
        source = fh.read()
    if _OLD_PATTERN not in source:
        return None  # a release with the fix
    code = compile(source.replace(_OLD_PATTERN, _NEW_PATTERN, 1), spec.origin, "exec")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        exec(code, module.__dict__)  # oscrypto's own source, one pattern fixed
    except BaseException:
        del sys.modules[name]
        raise
    return name
