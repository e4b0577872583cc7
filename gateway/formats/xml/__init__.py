"""XML payloads: hardened parsing, standard detection, XSD validation and XPath mappings.

``safe`` parses a partner's bytes without obeying them; ``detect`` tells UBL, CII, Order-X
and other XML apart; ``schemas`` validates against the XSDs under ``schemas/xsd/``;
``mapping`` compiles ``format: xml`` mapping files; ``reader`` is the pipeline's
``XmlReader``.
"""
