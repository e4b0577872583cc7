"""AS2 (RFC 4130): the receive endpoint, MDNs and the keys they need.

``compat.prepare()`` runs before pyas2lib (and its oscrypto) is imported: see ``compat``.
"""
