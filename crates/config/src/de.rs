//! A serde `Deserializer` over the located tree.
//!
//! Why not `serde_json::Value` + `serde_path_to_error`: that gives a path but no positions, no way
//! to tell "at the key" from "at the value", and errors only as pre-rendered strings. Driving serde
//! from our own tree, every error is stamped with the innermost node that saw it: unknown keys at
//! the key, bad values at the value, missing keys at the object.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;

use crate::error::Problem;
use crate::path;
use crate::tree::{Entry, Kind, Node, Num};

/// Deserializes `T` from the tree.
pub(crate) fn from_tree<'de, T: de::Deserialize<'de>>(root: &'de Node) -> Result<T, Problem> {
    T::deserialize(De { node: root, path: String::new() })
        .map_err(|e| e.at(root.pos, ""))
        .map_err(DeError::into_problem)
}

#[derive(Debug)]
pub(crate) struct DeError {
    located: Option<(usize, String)>,
    message: String,
    hint: Option<String>,
}

impl DeError {
    fn new(message: impl Into<String>, hint: Option<String>) -> Self {
        Self { located: None, message: message.into(), hint }
    }

    /// Stamps a position unless a deeper node already did.
    fn at(mut self, pos: usize, path: &str) -> Self {
        if self.located.is_none() {
            self.located = Some((pos, path.to_owned()));
        }
        self
    }

    fn into_problem(self) -> Problem {
        let (pos, path) = self.located.unwrap_or_default();
        Problem { pos, path, message: self.message, hint: self.hint }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " — {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    /// Our own `Deserialize` impls write `"message — hint"`; split it back into its parts.
    fn custom<T: fmt::Display>(msg: T) -> Self {
        let text = msg.to_string();
        match text.split_once(" — ") {
            Some((message, hint)) => Self::new(message, Some(hint.to_owned())),
            None => Self::new(text, None),
        }
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::new(format!("expected {exp}, found {}", describe(&unexp)), None)
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::new(format!("invalid value: {}", describe(&unexp)), Some(format!("expected {exp}")))
    }

    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        Self::new(format!("expected {exp}, found {len} elements"), None)
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::new(
            format!("unknown value {variant:?}"),
            Some(format!("expected one of: {}", expected.join(", "))),
        )
    }

    fn unknown_field(_field: &str, expected: &'static [&'static str]) -> Self {
        // The key itself is the last segment of the path, so it is not repeated here.
        let hint = if expected.is_empty() {
            "this object takes no keys".to_owned()
        } else {
            format!("expected one of: {}", expected.join(", "))
        };
        Self::new("unknown key", Some(hint))
    }

    fn missing_field(field: &'static str) -> Self {
        Self::new(format!("missing key \"{field}\""), None)
    }

    fn duplicate_field(field: &'static str) -> Self {
        Self::new(format!("duplicate key \"{field}\""), None)
    }
}

/// Never echoes string contents: a misplaced string may be a secret.
fn describe(unexp: &de::Unexpected<'_>) -> String {
    use de::Unexpected as U;
    match unexp {
        U::Bool(b) => b.to_string(),
        U::Unsigned(n) => format!("the number {n}"),
        U::Signed(n) => format!("the number {n}"),
        U::Float(n) => format!("the number {n}"),
        U::Char(_) | U::Str(_) => "a string".to_owned(),
        U::Unit | U::Option => "null".to_owned(),
        U::Map => "an object".to_owned(),
        U::Seq => "an array".to_owned(),
        other => other.to_string(),
    }
}

struct De<'de> {
    node: &'de Node,
    path: String,
}

impl<'de> De<'de> {
    fn mismatch(&self, expected: &str) -> DeError {
        DeError::new(format!("expected {expected}, found {}", self.node.describe()), None)
    }

    /// The integer in `min..=max`, or a message saying which range was expected.
    fn int_in(&self, min: i128, max: i128) -> Result<i128, DeError> {
        match &self.node.kind {
            Kind::Num { value: Num::Int(n), .. } if (min..=max).contains(n) => Ok(*n),
            Kind::Num { value: Num::Int(_), .. } => {
                Err(self.mismatch(&format!("an integer from {min} to {max}")))
            }
            _ => Err(self.mismatch("an integer")),
        }
    }

    fn str(&self, expected: &str) -> Result<&'de str, DeError> {
        match &self.node.kind {
            Kind::Str { value, .. } => Ok(value),
            _ => Err(self.mismatch(expected)),
        }
    }

    fn object(self, expected: &str) -> Result<ObjAccess<'de>, DeError> {
        match &self.node.kind {
            Kind::Obj(entries) => Ok(ObjAccess { entries: entries.iter(), current: None, path: self.path }),
            _ => Err(self.mismatch(expected)),
        }
    }

    fn array(self) -> Result<ArrAccess<'de>, DeError> {
        match &self.node.kind {
            Kind::Arr(elements) => Ok(ArrAccess { elements: elements.iter().enumerate(), path: self.path }),
            _ => Err(self.mismatch("an array")),
        }
    }
}

macro_rules! int_methods {
    ($($method:ident: $ty:ty => $visit:ident as $via:ty;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let n = self.int_in(i128::from(<$ty>::MIN), i128::from(<$ty>::MAX))?;
            let n = <$via>::try_from(n).map_err(<DeError as de::Error>::custom)?;
            visitor.$visit(n)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for De<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Null => visitor.visit_unit(),
            Kind::Bool(b) => visitor.visit_bool(*b),
            Kind::Num { value: Num::Int(n), .. } => match (u64::try_from(*n), i64::try_from(*n)) {
                (Ok(u), _) => visitor.visit_u64(u),
                (_, Ok(i)) => visitor.visit_i64(i),
                // Beyond 64 bits: only floats can hold it, and a range check will reject it.
                _ => visitor.visit_f64(*n as f64),
            },
            Kind::Num { value: Num::Float(f), .. } => visitor.visit_f64(*f),
            Kind::Str { value, .. } => visitor.visit_borrowed_str(value),
            Kind::Arr(_) => visitor.visit_seq(self.array()?),
            Kind::Obj(_) => visitor.visit_map(self.object("an object")?),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Bool(b) => visitor.visit_bool(*b),
            _ => Err(self.mismatch("true or false")),
        }
    }

    int_methods! {
        deserialize_i8: i8 => visit_i64 as i64;
        deserialize_i16: i16 => visit_i64 as i64;
        deserialize_i32: i32 => visit_i64 as i64;
        deserialize_i64: i64 => visit_i64 as i64;
        deserialize_u8: u8 => visit_u64 as u64;
        deserialize_u16: u16 => visit_u64 as u64;
        deserialize_u32: u32 => visit_u64 as u64;
        deserialize_u64: u64 => visit_u64 as u64;
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Num { value: Num::Int(n), .. } => visitor.visit_f64(*n as f64),
            Kind::Num { value: Num::Float(f), .. } => visitor.visit_f64(*f),
            _ => Err(self.mismatch("a number")),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_borrowed_str(self.str("a string")?)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    /// `null` and `""` both mean "not set", so `"${VAR:-}"` can switch an optional setting off.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Null => visitor.visit_none(),
            Kind::Str { value, .. } if value.is_empty() => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Null => visitor.visit_unit(),
            _ => Err(self.mismatch("null")),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_seq(self.array()?)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_map(self.object("an object")?)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        // Checked here rather than by serde so the message says "object", not "struct Foo".
        let (pos, path) = (self.node.pos, self.path.clone());
        visitor.visit_map(self.object("an object")?).map_err(|e| e.at(pos, &path))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let value = self.str(&format!("one of: {}", variants.join(", ")))?;
        visitor.visit_enum(value.into_deserializer())
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct ObjAccess<'de> {
    entries: std::slice::Iter<'de, Entry>,
    current: Option<(&'de Entry, String)>,
    path: String,
}

impl<'de> de::MapAccess<'de> for ObjAccess<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        let child = path::key(&self.path, &entry.raw_key);
        let key = seed.deserialize(KeyDe { key: &entry.key }).map_err(|e| e.at(entry.key_pos, &child))?;
        self.current = Some((entry, child));
        Ok(Some(key))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((entry, child)) = self.current.take() else {
            return Err(DeError::new("internal error: a value was read before its key", None));
        };
        let pos = entry.value.pos;
        seed.deserialize(De { node: &entry.value, path: child.clone() }).map_err(|e| e.at(pos, &child))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct ArrAccess<'de> {
    elements: std::iter::Enumerate<std::slice::Iter<'de, Node>>,
    path: String,
}

impl<'de> de::SeqAccess<'de> for ArrAccess<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        let Some((i, node)) = self.elements.next() else {
            return Ok(None);
        };
        let child = path::index(&self.path, i);
        let pos = node.pos;
        seed.deserialize(De { node, path: child.clone() }).map(Some).map_err(|e| e.at(pos, &child))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.elements.len())
    }
}

/// Object keys are always strings; whoever reads them decides what they mean.
struct KeyDe<'de> {
    key: &'de str,
}

impl<'de> de::Deserializer<'de> for KeyDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_borrowed_str(self.key)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}
