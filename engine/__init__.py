"""The durable state machine on Redis: key schema, events, codecs, Redis Functions,
and the pure replay machine. Nothing here is user-facing API; `sdk` builds on it."""
