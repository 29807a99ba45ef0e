"""Channel adapters, one package per channel (telegram, email, webform).

Each translates between the outside world and the hub's normalized types
(``hub.kernel.types``) through the contract of ``hub.kernel.ports.ChannelPort``; no business
rules live here, and no channel imports ``routing`` or ``storage``.
"""
