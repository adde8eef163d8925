"""What the Parallels descriptors (config.pvs, DiskDescriptor.xml) share: parsing without entities or network,
their root checked, and elements added with their text."""

from __future__ import annotations

from lxml import etree

from .errors import BadInput


def parse(xml: bytes, root_tag: str) -> etree._Element:
    """The root element, or BadInput when the bytes are not XML or the root is another element."""
    try:
        root = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False))
    except etree.XMLSyntaxError as e:
        raise BadInput(f"not XML ({e})") from None
    if root.tag != root_tag:
        raise BadInput(f"its root element is <{root.tag}>, not <{root_tag}>")
    return root


def add(parent: etree._Element, name: str, text: str | int | None = None, **attributes: str) -> etree._Element:
    el = etree.SubElement(parent, name, **attributes)
    if text is not None:
        el.text = str(text)
    return el
