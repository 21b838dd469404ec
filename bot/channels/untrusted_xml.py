"""XML from the internet (WeChat and WeCom callbacks), parsed with defusedxml before anything else reads it:
no DTDs, no entity expansion (billion laughs), no external entities (XXE)."""

from __future__ import annotations

from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring


class UnsafeXml(ValueError):
    """Hostile or malformed XML; the message says which."""


def parse_untrusted_xml(body: bytes) -> Element:
    try:
        return fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as e:
        raise UnsafeXml(f"hostile XML refused: {type(e).__name__}") from e
    except Exception as e:  # noqa: BLE001 - any parse error: malformed
        raise UnsafeXml(f"malformed XML: {e}") from e
