"""Channel adapters, one package per channel (telegram, email, webform).

Each translates between the outside world and the hub's normalized types
(``hub.types``) through the contract of ``hub.ports.ChannelPort``; no business
rules live here, and no channel imports ``routing`` or ``storage``.
"""
