//! Read-only properties that say so: `Properties.Set` answers
//! `org.freedesktop.DBus.Error.PropertyReadOnly` for a property that exists, as
//! sd-bus does, and `UnknownProperty` only for one that does not.
//!
//! zbus answers `UnknownProperty` for both: the code its `#[interface]` macro writes
//! does not tell a property without a setter from a name it does not know. [`ReadOnly`]
//! wraps an interface, hands it everything else unchanged, and answers `Set` itself.
//!
//! zbus calls [`Interface`] an unstable API that may change in a minor release. The
//! lock file pins zbus, and every method below only forwards, so a change to the trait
//! is a compile error here, not a change of behaviour.

use std::collections::HashMap;
use std::fmt::Write;

use zbus::message::{Header, Message};
use zbus::names::{InterfaceName, MemberName};
use zbus::object_server::{DispatchResult, Interface, SignalEmitter};
use zbus::{BoxDBusError, Connection, ObjectServer, OwnedVariant, Variant, fdo};

/// `I`, with every property read-only on the bus. Every interface the service exports
/// with properties is wrapped in it; none has a setter.
pub struct ReadOnly<I>(pub I);

#[async_trait::async_trait]
impl<I: Interface> Interface for ReadOnly<I> {
    fn name() -> InterfaceName<'static> {
        I::name()
    }

    fn spawn_tasks_for_methods(&self) -> bool {
        self.0.spawn_tasks_for_methods()
    }

    async fn get(
        &self,
        property_name: &str,
        server: &ObjectServer,
        connection: &Connection,
        header: Option<&Header<'_>>,
        emitter: &SignalEmitter<'_>,
    ) -> Option<Result<OwnedVariant, BoxDBusError>> {
        self.0.get(property_name, server, connection, header, emitter).await
    }

    async fn get_all(
        &self,
        server: &ObjectServer,
        connection: &Connection,
        header: Option<&Header<'_>>,
        emitter: &SignalEmitter<'_>,
    ) -> fdo::Result<HashMap<String, OwnedVariant>> {
        self.0.get_all(server, connection, header, emitter).await
    }

    /// Whether the property exists is asked of its getter: the wrapped interface's own
    /// `set` answers "not found" for both kinds of name.
    fn set<'call>(
        &'call self,
        property_name: &'call str,
        _value: &'call Variant<'_>,
        server: &'call ObjectServer,
        connection: &'call Connection,
        header: Option<&'call Header<'_>>,
        emitter: &'call SignalEmitter<'_>,
    ) -> DispatchResult<'call> {
        DispatchResult::Async(Box::pin(async move {
            let error = match self.0.get(property_name, server, connection, header, emitter).await {
                Some(_) => fdo::Error::PropertyReadOnly(format!("Property '{property_name}' is read-only")),
                None => fdo::Error::UnknownProperty(format!("Unknown property '{property_name}'")),
            };
            Err(error.into())
        }))
    }

    /// Never asked: zbus calls it only when [`Self::set`] answers `RequiresMut`.
    async fn set_mut(
        &mut self,
        _property_name: &str,
        _value: &Variant<'_>,
        _server: &ObjectServer,
        _connection: &Connection,
        _header: Option<&Header<'_>>,
        _emitter: &SignalEmitter<'_>,
    ) -> Option<Result<(), BoxDBusError>> {
        None
    }

    fn call<'call>(
        &'call self,
        server: &'call ObjectServer,
        connection: &'call Connection,
        message: &'call Message,
        name: MemberName<'call>,
    ) -> DispatchResult<'call> {
        self.0.call(server, connection, message, name)
    }

    fn call_mut<'call>(
        &'call mut self,
        server: &'call ObjectServer,
        connection: &'call Connection,
        message: &'call Message,
        name: MemberName<'call>,
    ) -> DispatchResult<'call> {
        self.0.call_mut(server, connection, message, name)
    }

    fn introspect_to_writer(&self, writer: &mut dyn Write, level: usize) {
        self.0.introspect_to_writer(writer, level);
    }
}
