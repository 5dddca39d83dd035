"""SM2 signatures with SM3 (GB/T 32918.2, GB/T 32905) from the system's OpenSSL 3 libcrypto.

Why OpenSSL, and why through :mod:`ctypes`: ``cryptography`` exposes SM3 but not SM2, and of the
packages that do (``tongsuopy``, ``gmssl-pyx``, ``gmssl-fast``, ``gmalglib``) the fast ones are
either stale (tongsuopy: last release February 2023, bundling its own Tongsuo 8.3) or of unclear
provenance, and the pure-Python ``gmssl`` takes tens of milliseconds per operation. Debian's
libcrypto 3 has SM2 and SM3, is maintained and patched by the distribution, and is the very code
the ``openssl`` CLI runs, so the interoperability test against the CLI checks one implementation
against its documented behaviour rather than two against each other. The README lists the
candidates measured and their figures.

Only what a signer and a verifier need is bound: reading and writing PEM keys (PKCS#8 private,
SubjectPublicKeyInfo public, the forms ``openssl pkey`` reads), generating a key, signing and
verifying with SM3 and a distinguishing id (GM/T 0009's default ``1234567812345678`` unless the
registry names another). Signatures are the DER ``SM2Signature`` of GM/T 0009
(``SEQUENCE { r, s }``), as ``openssl pkeyutl`` writes them. Public keys travel raw: the 65-byte
uncompressed point ``04 || x || y``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, Final

from bus.errors import ConfigError

__all__ = [
    "DEFAULT_DISTID",
    "SM2_SPKI_PREFIX",
    "Sm2PrivateKey",
    "Sm2PublicKey",
    "available",
    "generate_private_key",
    "openssl_version",
    "sm3",
    "verify",
]

DEFAULT_DISTID: Final = b"1234567812345678"
"""The signer's distinguishing id GM/T 0009-2012 specifies when none is agreed (used in Z)."""

SM2_SPKI_PREFIX: Final = bytes.fromhex(
    "3059"  # SEQUENCE, 89 bytes
    "3013"  # SEQUENCE AlgorithmIdentifier
    "06072a8648ce3d0201"  # OID 1.2.840.10045.2.1 id-ecPublicKey
    "06082a811ccf5501822d"  # OID 1.2.156.10197.1.301 sm2p256v1
    "034200"  # BIT STRING, 66 bytes, no unused bits
)
"""The DER SubjectPublicKeyInfo of an SM2 key up to its point: prefix + 65 raw bytes is the key."""

_POINT_LEN: Final = 65


class _Lib:
    """libcrypto's functions, typed once."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("crypto")
        try:
            lib = ctypes.CDLL(name or "libcrypto.so.3")
        except OSError as e:
            raise ConfigError(f"the SM2 profile needs OpenSSL 3's libcrypto: {e}") from e
        lib.OpenSSL_version_num.restype = ctypes.c_ulong
        version = lib.OpenSSL_version_num()
        if version < 0x30000000:
            raise ConfigError(f"the SM2 profile needs OpenSSL 3, libcrypto is {version:#x}")
        self.version = version
        p, i, u, sz = ctypes.c_void_p, ctypes.c_int, ctypes.c_ulong, ctypes.c_size_t
        c = ctypes.c_char_p
        pp = ctypes.POINTER(ctypes.c_void_p)
        self._bind(lib, "BIO_new_mem_buf", p, [c, i])
        self._bind(lib, "BIO_s_mem", p, [])
        self._bind(lib, "BIO_new", p, [p])
        self._bind(lib, "BIO_free", i, [p])
        self._bind(lib, "BIO_read", i, [p, p, i])
        self._bind(lib, "BIO_ctrl", ctypes.c_long, [p, i, ctypes.c_long, p])
        self._bind(lib, "PEM_read_bio_PrivateKey", p, [p, p, p, p])
        self._bind(lib, "PEM_read_bio_PUBKEY", p, [p, p, p, p])
        self._bind(lib, "PEM_write_bio_PKCS8PrivateKey", i, [p, p, p, p, i, p, p])
        self._bind(lib, "PEM_write_bio_PUBKEY", i, [p, p])
        self._bind(lib, "d2i_PUBKEY", p, [p, ctypes.POINTER(c), ctypes.c_long])
        self._bind(lib, "i2d_PUBKEY", i, [p, ctypes.POINTER(ctypes.POINTER(ctypes.c_ubyte))])
        self._bind(lib, "CRYPTO_free", None, [p, c, i])
        self._bind(lib, "EVP_PKEY_free", None, [p])
        self._bind(lib, "EVP_PKEY_is_a", i, [p, c])
        self._bind(lib, "EVP_PKEY_CTX_new_from_name", p, [p, c, p])
        self._bind(lib, "EVP_PKEY_CTX_free", None, [p])
        self._bind(lib, "EVP_PKEY_keygen_init", i, [p])
        self._bind(lib, "EVP_PKEY_generate", i, [p, pp])
        self._bind(lib, "EVP_PKEY_CTX_set1_id", i, [p, c, i])
        self._bind(lib, "EVP_MD_CTX_new", p, [])
        self._bind(lib, "EVP_MD_CTX_free", None, [p])
        self._bind(lib, "EVP_MD_fetch", p, [p, c, p])
        self._bind(lib, "EVP_DigestSignInit", i, [p, pp, p, p, p])
        self._bind(lib, "EVP_DigestSign", i, [p, p, ctypes.POINTER(sz), c, sz])
        self._bind(lib, "EVP_DigestVerifyInit", i, [p, pp, p, p, p])
        self._bind(lib, "EVP_DigestVerify", i, [p, c, sz, c, sz])
        self._bind(lib, "ERR_get_error", u, [])
        self._bind(lib, "ERR_clear_error", None, [])
        self._bind(lib, "ERR_error_string_n", None, [u, p, sz])
        self.sm3_md = self.EVP_MD_fetch(None, b"SM3", None)
        if not self.sm3_md:
            raise ConfigError(f"this libcrypto has no SM3: {self.error()}")

    def _bind(self, lib: ctypes.CDLL, name: str, restype: object, argtypes: list[object]) -> None:
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
        setattr(self, name, fn)

    def error(self) -> str:
        """OpenSSL's error queue as one line, and the queue emptied."""
        messages = []
        while code := self.ERR_get_error():
            buf = ctypes.create_string_buffer(256)
            self.ERR_error_string_n(code, buf, len(buf))
            messages.append(buf.value.decode("ascii", "replace"))
        return "; ".join(messages) or "no detail from OpenSSL"

    def __getattr__(self, name: str) -> Any:  # pragma: no cover - typing aid for bound functions
        raise AttributeError(name)


_lib_instance: _Lib | None = None
_lib_lock = threading.Lock()


def _libcrypto() -> _Lib:
    global _lib_instance
    if _lib_instance is None:
        with _lib_lock:
            if _lib_instance is None:
                _lib_instance = _Lib()
    return _lib_instance


def openssl_version() -> str:
    """The libcrypto's version, e.g. ``3.0.19`` (benchmarks and reports name it)."""
    v = _libcrypto().version
    return f"{v >> 28}.{(v >> 20) & 0xFF}.{(v >> 4) & 0xFF}"


def available() -> bool:
    """Whether this machine's libcrypto can do SM2 with SM3."""
    try:
        _libcrypto()
    except ConfigError:
        return False
    return True


class _Pkey:
    """Owns one ``EVP_PKEY*`` and frees it."""

    __slots__ = ("_lib", "ptr")

    def __init__(self, lib: _Lib, ptr: int) -> None:
        self._lib = lib
        self.ptr = ptr

    def __del__(self) -> None:
        if self.ptr:
            self._lib.EVP_PKEY_free(self.ptr)
            self.ptr = 0


def _read_pem(pem: bytes, *, private: bool) -> _Pkey:
    lib = _libcrypto()
    bio = lib.BIO_new_mem_buf(pem, len(pem))
    if not bio:
        raise ConfigError(f"cannot read a PEM key: {lib.error()}")
    try:
        reader = lib.PEM_read_bio_PrivateKey if private else lib.PEM_read_bio_PUBKEY
        ptr = reader(bio, None, None, None)
    finally:
        lib.BIO_free(bio)
    what = "PKCS#8 PEM private key" if private else "SubjectPublicKeyInfo PEM public key"
    if not ptr:
        raise ConfigError(f"not a readable {what}: {lib.error()}")
    key = _Pkey(lib, ptr)
    if lib.EVP_PKEY_is_a(ptr, b"SM2") != 1:
        raise ConfigError(f"expected an SM2 key (curve sm2p256v1) in the {what}")
    return key


def _write_bio(write: object, *args: object) -> bytes:
    lib = _libcrypto()
    bio = lib.BIO_new(lib.BIO_s_mem())
    if not bio:
        raise ConfigError(f"cannot allocate a BIO: {lib.error()}")
    try:
        if write(bio, *args) != 1:  # type: ignore[operator]
            raise ConfigError(f"OpenSSL could not write the key: {lib.error()}")
        pending = lib.BIO_ctrl(bio, 10, 0, None)  # BIO_CTRL_PENDING
        buf = ctypes.create_string_buffer(pending)
        got = lib.BIO_read(bio, buf, pending)
        return buf.raw[:got]
    finally:
        lib.BIO_free(bio)


def _spki_der(key: _Pkey) -> bytes:
    lib = _libcrypto()
    out = ctypes.POINTER(ctypes.c_ubyte)()
    n = lib.i2d_PUBKEY(key.ptr, ctypes.byref(out))
    if n <= 0:
        raise ConfigError(f"OpenSSL could not encode the public key: {lib.error()}")
    try:
        return ctypes.string_at(out, n)
    finally:
        lib.CRYPTO_free(out, b"bus/sm2.py", 0)


def _raw_point(key: _Pkey) -> bytes:
    der = _spki_der(key)
    if len(der) != len(SM2_SPKI_PREFIX) + _POINT_LEN or not der.startswith(SM2_SPKI_PREFIX):
        raise ConfigError("the SM2 public key is not an uncompressed point on sm2p256v1")
    return der[len(SM2_SPKI_PREFIX) :]


def _check_distid(distid: bytes) -> None:
    # GM/T 0009 counts ENTL in bits in two bytes: at most 8191 bytes of id.
    if not 0 < len(distid) < 8192:
        raise ConfigError(f"an SM2 distinguishing id is 1 to 8191 bytes, not {len(distid)}")


@contextlib.contextmanager
def _sm3_context(init: Any, key: _Pkey, distid: bytes, what: str) -> Iterator[int]:
    """An ``EVP_MD_CTX`` set up by ``init`` (DigestSign or DigestVerify) for SM3 with ``key``
    and the distinguishing id ``distid``, freed on leaving."""
    _check_distid(distid)
    lib = _libcrypto()
    mctx = lib.EVP_MD_CTX_new()
    if not mctx:
        raise MemoryError("EVP_MD_CTX_new")
    try:
        # The EVP_PKEY_CTX the init hands back belongs to mctx; the id goes into Z on the
        # first update, so it may be set after the init (as openssl pkeyutl does).
        pctx = ctypes.c_void_p()
        if init(mctx, ctypes.byref(pctx), lib.sm3_md, None, key.ptr) != 1:
            raise ConfigError(f"SM2 {what} could not start: {lib.error()}")
        if lib.EVP_PKEY_CTX_set1_id(pctx, distid, len(distid)) != 1:
            raise ConfigError(f"SM2 {what} could not take the id: {lib.error()}")
        yield mctx
    finally:
        lib.EVP_MD_CTX_free(mctx)


class Sm2PublicKey:
    """An SM2 public key: verifies SM2-with-SM3 signatures."""

    __slots__ = ("_key", "raw")

    def __init__(self, key: _Pkey, raw: bytes) -> None:
        self._key = key
        self.raw: Final = raw
        """The uncompressed point, 65 bytes."""

    @classmethod
    def from_raw(cls, raw: bytes) -> Sm2PublicKey:
        """The key of a 65-byte uncompressed point; ConfigError if it is not on the curve."""
        if len(raw) != _POINT_LEN or raw[0] != 4:
            raise ConfigError(f"an SM2 public key is a 65-byte point starting 04, got {len(raw)}")
        lib = _libcrypto()
        der = SM2_SPKI_PREFIX + raw
        cursor = ctypes.c_char_p(der)
        ptr = lib.d2i_PUBKEY(None, ctypes.byref(cursor), len(der))
        if not ptr:
            raise ConfigError(f"not a point on sm2p256v1: {lib.error()}")
        key = _Pkey(lib, ptr)
        if lib.EVP_PKEY_is_a(ptr, b"SM2") != 1:
            raise ConfigError("OpenSSL did not read the point as an SM2 key")
        return cls(key, raw)

    @classmethod
    def from_pem(cls, pem: bytes) -> Sm2PublicKey:
        """The key of a SubjectPublicKeyInfo PEM (``openssl pkey -pubout``)."""
        key = _read_pem(pem, private=False)
        return cls(key, _raw_point(key))

    def pem(self) -> bytes:
        """SubjectPublicKeyInfo PEM."""
        return _write_bio(_libcrypto().PEM_write_bio_PUBKEY, self._key.ptr)

    def verify(self, signature: bytes, data: bytes, *, distid: bytes = DEFAULT_DISTID) -> bool:
        """Whether ``signature`` (DER) is this key's SM2 signature of ``data`` with SM3."""
        lib = _libcrypto()
        with _sm3_context(lib.EVP_DigestVerifyInit, self._key, distid, "verify") as mctx:
            ok: bool = lib.EVP_DigestVerify(mctx, signature, len(signature), data, len(data)) == 1
            if not ok:
                lib.ERR_clear_error()  # a malformed DER signature leaves an error behind
            return ok


class Sm2PrivateKey:
    """An SM2 private key: signs with SM3 and the signer's distinguishing id."""

    __slots__ = ("_key", "public_key")

    def __init__(self, key: _Pkey) -> None:
        self._key = key
        raw = _raw_point(key)
        self.public_key: Final = Sm2PublicKey(key, raw)
        """Its public half (the same ``EVP_PKEY``)."""

    @classmethod
    def from_pem(cls, pem: bytes) -> Sm2PrivateKey:
        """The key of an unencrypted PKCS#8 PEM (``openssl genpkey -algorithm SM2``)."""
        return cls(_read_pem(pem, private=True))

    def pem(self) -> bytes:
        """Unencrypted PKCS#8 PEM, the form ``openssl pkey`` reads."""
        lib = _libcrypto()
        return _write_bio(
            lib.PEM_write_bio_PKCS8PrivateKey, self._key.ptr, None, None, 0, None, None
        )

    def sign(self, data: bytes, *, distid: bytes = DEFAULT_DISTID) -> bytes:
        """The DER SM2 signature of ``data`` with SM3: ``e = SM3(Z || data)``."""
        lib = _libcrypto()
        with _sm3_context(lib.EVP_DigestSignInit, self._key, distid, "sign") as mctx:
            size = ctypes.c_size_t(0)
            if lib.EVP_DigestSign(mctx, None, ctypes.byref(size), None, 0) != 1:
                raise ConfigError(f"SM2 sign could not size its output: {lib.error()}")
            buf = ctypes.create_string_buffer(size.value)
            if lib.EVP_DigestSign(mctx, buf, ctypes.byref(size), data, len(data)) != 1:
                raise ConfigError(f"SM2 sign failed: {lib.error()}")
            return buf.raw[: size.value]


def generate_private_key() -> Sm2PrivateKey:
    """A fresh SM2 key from OpenSSL's random generator."""
    lib = _libcrypto()
    ctx = lib.EVP_PKEY_CTX_new_from_name(None, b"SM2", None)
    if not ctx:
        raise ConfigError(f"OpenSSL cannot make SM2 keys: {lib.error()}")
    try:
        out = ctypes.c_void_p()
        if lib.EVP_PKEY_keygen_init(ctx) != 1 or lib.EVP_PKEY_generate(ctx, ctypes.byref(out)) != 1:
            raise ConfigError(f"SM2 key generation failed: {lib.error()}")
    finally:
        lib.EVP_PKEY_CTX_free(ctx)
    return Sm2PrivateKey(_Pkey(lib, out.value or 0))


_CACHE_SIZE: Final = 1024
_verifiers: OrderedDict[bytes, Sm2PublicKey] = OrderedDict()
_verifiers_lock = threading.Lock()


def _public(raw: bytes) -> Sm2PublicKey:
    with _verifiers_lock:
        key = _verifiers.get(raw)
        if key is not None:
            _verifiers.move_to_end(raw)
            return key
    key = Sm2PublicKey.from_raw(raw)
    with _verifiers_lock:
        _verifiers[raw] = key
        while len(_verifiers) > _CACHE_SIZE:
            _verifiers.popitem(last=False)
    return key


def verify(
    public_key: bytes, signature: bytes, data: bytes, *, distid: bytes = DEFAULT_DISTID
) -> bool:
    """Whether ``signature`` is the SM2-with-SM3 signature of ``data`` by the 65-byte point
    ``public_key``; False (never an exception) for a key that is not on the curve."""
    try:
        key = _public(public_key)
    except ConfigError:
        return False
    return key.verify(signature, data, distid=distid)


def sm3(data: bytes) -> bytes:
    """The SM3 digest (GB/T 32905) of ``data``, 32 bytes, from the same libcrypto."""
    import hashlib

    try:
        return hashlib.new("sm3", data).digest()
    except ValueError:  # a Python linked against a libcrypto without SM3
        from cryptography.hazmat.primitives import hashes

        h = hashes.Hash(hashes.SM3())
        h.update(data)
        return h.finalize()
