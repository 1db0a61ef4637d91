"""Properties of the local syntax check and the CSV formula neutraliser, over generated hostile input.

The local check decides rows that are then unsubscribed without the verifier ever seeing them, so the
properties that matter are: it never rejects what email-validator (quoted local parts, IP literals and
SMTPUTF8 allowed, no DNS) accepts, every string gets exactly one outcome without raising, and the
normalisation is idempotent (results are keyed by normalising Clearout's echo of what was sent).
"""

from __future__ import annotations

import pyarrow as pa
from email_validator import EmailNotValidError, validate_email
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearout_provider.contacts import NormalisedEmails, extract_address, normalise_emails
from clearout_provider.safe_csv import FORMULA_START, neutralise, neutralise_array, restore, restore_array

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Characters that matter to address syntax, wrappers and spreadsheets, plus a few scripts.
_SPECIALS = "@.\"\\ <>()[],;:'-_+=!#$%&*/?^`{|}~\t\r\n\x00\u00a0\u200b\u200d\ufeff\u2060\u00ad＠。"
_ALPHABET = st.sampled_from("abcxyzAZ019" + _SPECIALS + "üßéİ例え☃δ")
_ATEXT = st.sampled_from("abcxyz019!#$%&'*+-/=?^_`{|}~ü例")
_LABEL = st.text(st.sampled_from("abcz09-üé例"), min_size=1, max_size=12)
_QUOTED = st.text(st.sampled_from('abc @.,"\\()<>üé'), max_size=10).map(
    lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
)


@st.composite
def addresses(draw: st.DrawFn) -> str:
    """Mostly address-shaped strings: dot-atom or quoted local parts, domains, IP literals, wrappers."""
    local = draw(
        st.one_of(
            st.lists(st.text(_ATEXT, min_size=1, max_size=8), min_size=1, max_size=3).map(".".join),
            _QUOTED,
            st.text(_ALPHABET, max_size=10),
        )
    )
    domain = draw(
        st.one_of(
            st.tuples(
                st.lists(_LABEL, min_size=1, max_size=3), st.sampled_from(["com", "de", "co.uk", "xn--p1ai"])
            ).map(lambda t: ".".join([*t[0], t[1]])),
            st.ip_addresses(v=4).map(lambda ip: f"[{ip}]"),
            st.ip_addresses(v=6).map(lambda ip: f"[IPv6:{ip}]"),
            st.text(_ALPHABET, max_size=12),
        )
    )
    address = f"{local}@{domain}"
    wrap = draw(st.sampled_from(["{}", "<{}>", "Ann <{}>", "mailto:{}", '"{}"', "{};", " {} ", "\u200b{}"]))
    return wrap.format(address)


_ANY = st.one_of(addresses(), st.emails(), st.text(_ALPHABET, max_size=30), st.text(max_size=30))


def _permissive(address: str) -> str | None:
    try:
        checked = validate_email(
            address,
            check_deliverability=False,
            allow_quoted_local=True,
            allow_domain_literal=True,
            allow_smtputf8=True,
        )
    except EmailNotValidError:
        return None
    return f"{checked.local_part}@{checked.ascii_domain}"


def _one(value: str | None) -> NormalisedEmails:
    return normalise_emails(pa.array([value], pa.string()))


@SETTINGS
@given(_ANY)
def test_normalisation_is_idempotent(value: str) -> None:
    first = _one(value)
    normalised = first.normalised[0].as_py()
    if normalised is None:
        return
    second = _one(normalised)
    assert second.normalised[0].as_py() == normalised
    assert second.valid[0].as_py() == first.valid[0].as_py()  # sent stays sent, decided stays decided


@SETTINGS
@given(st.one_of(_ANY, st.none()))
def test_every_input_has_exactly_one_defined_outcome(value: str | None) -> None:
    result = _one(value)
    empty, sent, reason = result.empty[0].as_py(), result.valid[0].as_py(), result.reason[0].as_py()
    assert [empty, sent, reason is not None].count(True) == 1
    assert (result.normalised[0].as_py() is None) == empty


@SETTINGS
@given(_ANY)
def test_never_rejects_what_email_validator_accepts(value: str) -> None:
    lowered = pa.compute.utf8_lower(pa.array([value.strip()])).to_pylist()[0]
    expected = _permissive(lowered)
    if expected is None:
        return
    result = _one(value)
    assert result.valid[0].as_py(), (value, result.reason[0].as_py())
    assert result.normalised[0].as_py() == expected


@SETTINGS
@given(_ANY)
def test_extracting_an_address_is_idempotent(value: str) -> None:
    assert extract_address(extract_address(value)) == extract_address(value)


_CELLS = st.one_of(
    st.text(max_size=20),
    st.text(st.sampled_from("'=+-@\t\rab\n"), max_size=8),
)


@SETTINGS
@given(_CELLS)
def test_neutralised_cells_never_start_a_formula_and_restore_exactly(text: str) -> None:
    safe = neutralise(text)
    assert not safe or safe[0] not in FORMULA_START
    assert restore(safe) == text


@SETTINGS
@given(st.lists(st.one_of(_CELLS, st.none()), max_size=20))
def test_vectorised_neutraliser_and_restorer_equal_the_scalar_ones(cells: list[str | None]) -> None:
    safe = neutralise_array(pa.array(cells, pa.string()))
    assert safe.to_pylist() == [neutralise(c) for c in cells]
    assert restore_array(safe).to_pylist() == cells
