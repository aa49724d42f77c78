from ._lmtp import Client, Error
