//! The extension's `extension.json`, built into the binary: what Connect shows of it (name,
//! description, variables with their descriptions), joined by the runner with the handlers
//! declared in the code.

use connect_eaas::registry::{DescriptorError, ExtensionDescriptor};

/// The `extension.json` built into the binary.
pub const EXTENSION_JSON: &str = include_str!("../extension.json");

/// The descriptor built into the binary.
pub fn builtin_descriptor() -> Result<ExtensionDescriptor, DescriptorError> {
    ExtensionDescriptor::parse(EXTENSION_JSON, "extension.json (built in)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use connect_eaas::registry::Registry;

    #[test]
    fn extension_json_describes_every_declared_variable() {
        let descriptor = builtin_descriptor().expect("built-in descriptor");
        let registry = Registry::collect().expect("the extension's registry");
        let declared: Vec<(&str, &str, bool)> = registry
            .variables()
            .iter()
            .map(|v| (v.name, v.initial_value, v.secure))
            .collect();
        let described: Vec<(&str, &str, bool)> = descriptor
            .variables
            .iter()
            .map(|v| (v.name.as_str(), v.initial_value.as_str(), v.secure))
            .collect();
        for d in &declared {
            assert!(
                described.contains(d),
                "{d:?} is declared but not in extension.json"
            );
        }
        for d in &described {
            assert!(
                declared.contains(d),
                "{d:?} is in extension.json but not declared"
            );
        }
        assert_eq!(descriptor.version, crate::VERSION, "one version");
    }
}
