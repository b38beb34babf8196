//! The sandbox: a local emulator of the Connect REST API.
