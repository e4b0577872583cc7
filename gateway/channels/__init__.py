"""The channels payloads arrive by, one package each. Each exports ``CHANNEL``, its
``ChannelKind`` (``kind``); ``registry`` lists them; ``receive`` is the
receive-then-acknowledge order they share; ``sections`` the base of their settings. This
package itself imports nothing."""
