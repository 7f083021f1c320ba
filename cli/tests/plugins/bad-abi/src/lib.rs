//! A library that looks like a Harrow plugin from the future: it exports
//! the ABI version symbol, with a version no engine speaks.

#[unsafe(no_mangle)]
pub extern "C" fn harrow_plugin_abi_version() -> u32 {
    999
}
