//! Reading member lists out of introspection XML, to compare the documented contract
//! with what the service really exports.
//!
//! Both our XML file and zbus's introspection put one element per line, so a line
//! reader is enough and keeps the suite free of an XML dependency.

use std::collections::BTreeSet;

fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}=\""))? + name.len() + 2;
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

/// Every member of the `org.kairos.Extensions1.*` interfaces in `xml`, one string each:
/// `Iface.method.Name(in)->(out)`, `Iface.signal.Name(args)`,
/// `Iface.property.Name:type:access:emits`, where `emits` is the property's
/// `org.freedesktop.DBus.Property.EmitsChangedSignal` annotation, `true` (the D-Bus
/// default, which zbus leaves unwritten) when it has none.
pub fn members(xml: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut interface: Option<String> = None;
    let mut member: Option<(&'static str, String, String, String)> = None;
    let mut property: Option<(String, String)> = None;
    let finish = |m: (&str, String, String, String), iface: &str, out: &mut BTreeSet<String>| {
        let (kind, name, ins, outs) = m;
        if kind == "method" {
            out.insert(format!("{iface}.method.{name}({ins})->({outs})"));
        } else {
            out.insert(format!("{iface}.signal.{name}({ins})"));
        }
    };
    for line in xml.lines().map(str::trim) {
        if line.starts_with("<interface ") {
            interface = attr(line, "name").filter(|n| n.starts_with("org.kairos.Extensions1")).map(str::to_owned);
            continue;
        }
        if line.starts_with("</interface") {
            interface = None;
            continue;
        }
        let Some(iface) = interface.as_deref() else { continue };
        for kind in ["method", "signal"] {
            if line.starts_with(&format!("<{kind} ")) {
                let name = attr(line, "name").unwrap_or_default().to_owned();
                let started = (if kind == "method" { "method" } else { "signal" }, name, String::new(), String::new());
                if line.ends_with("/>") {
                    finish(started, iface, &mut out);
                } else {
                    member = Some(started);
                }
            }
            if line.starts_with(&format!("</{kind}"))
                && let Some(m) = member.take()
            {
                finish(m, iface, &mut out);
            }
        }
        if line.starts_with("<arg ")
            && let Some((kind, _, ins, outs)) = member.as_mut()
        {
            let ty = attr(line, "type").unwrap_or_default();
            let direction = attr(line, "direction").unwrap_or(if *kind == "signal" { "out" } else { "in" });
            if *kind == "signal" || direction == "in" { ins.push_str(ty) } else { outs.push_str(ty) }
        }
        if line.starts_with("<property ") {
            let name = attr(line, "name").unwrap_or_default();
            let ty = attr(line, "type").unwrap_or_default();
            let access = attr(line, "access").unwrap_or_default();
            let described = format!("{iface}.property.{name}:{ty}:{access}");
            if line.ends_with("/>") {
                out.insert(format!("{described}:true"));
            } else {
                property = Some((described, "true".to_owned()));
            }
        }
        if line.starts_with("<annotation ")
            && attr(line, "name") == Some("org.freedesktop.DBus.Property.EmitsChangedSignal")
            && let Some((_, emits)) = property.as_mut()
        {
            *emits = attr(line, "value").unwrap_or_default().to_owned();
        }
        if line.starts_with("</property")
            && let Some((described, emits)) = property.take()
        {
            out.insert(format!("{described}:{emits}"));
        }
    }
    out
}

/// The method names of `xml`, as `(interface, member)` pairs.
pub fn methods(xml: &str) -> Vec<(String, String)> {
    members(xml)
        .into_iter()
        .filter_map(|m| {
            let (iface, rest) = m.split_once(".method.")?;
            let name = rest.split('(').next()?;
            Some((iface.to_owned(), name.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_methods_signals_and_properties() {
        let xml = r#"<node>
  <interface name="org.kairos.Extensions1.Job">
    <method name="Cancel"/>
    <method name="X">
      <arg name="a" type="s" direction="in"/>
      <arg type="t" direction="out"/>
    </method>
    <signal name="S">
      <arg name="n" type="s"/>
    </signal>
    <property name="Id" type="t" access="read">
      <annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/>
    </property>
    <property name="State" type="s" access="read"/>
  </interface>
  <interface name="org.freedesktop.DBus.Peer"><method name="Ping"/></interface>
</node>"#;
        let found: Vec<String> = members(xml).into_iter().collect();
        assert_eq!(
            found,
            [
                "org.kairos.Extensions1.Job.method.Cancel()->()",
                "org.kairos.Extensions1.Job.method.X(s)->(t)",
                "org.kairos.Extensions1.Job.property.Id:t:read:const",
                "org.kairos.Extensions1.Job.property.State:s:read:true",
                "org.kairos.Extensions1.Job.signal.S(s)",
            ]
        );
    }
}
