import Foundation

/// A value inside a template, with Python's semantics (what jinja2 sees): lists and tuples,
/// insertion-ordered dicts with string keys, undefined names that print as nothing.
public indirect enum Value {
    case undefined(String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([Value])
    case dict(Dict)
    case namespace(Namespace)
    case macro(Macro)
    case function(Builtin)

    /// An insertion-ordered dict with string keys.
    public struct Dict {
        public private(set) var keys: [String] = []
        var storage: [String: Value] = [:]
        public init() {}
        public init(_ pairs: [(String, Value)]) { for (k, v) in pairs { self[k] = v } }
        public subscript(key: String) -> Value? {
            get { storage[key] }
            set {
                if storage[key] == nil, newValue != nil { keys.append(key) }
                if newValue == nil, storage[key] != nil { keys.removeAll { $0 == key } }
                storage[key] = newValue
            }
        }
        public var count: Int { keys.count }
        public var pairs: [(String, Value)] { keys.map { ($0, storage[$0]!) } }
    }

    /// `namespace(...)`: the one mutable object a template can assign attributes of.
    public final class Namespace {
        var values = Dict()
        init(_ d: Dict) { values = d }
    }

    /// A function given to the template (`raise_exception`, `range`, ...).
    public struct Builtin {
        let name: String
        let call: ([Value], [(String, Value)]) throws -> Value
        public init(name: String, call: @escaping ([Value], [(String, Value)]) throws -> Value) { self.name = name; self.call = call }
    }

    /// The template value of a JSON document (objects keep their key order).
    public init(json: JSONValue) {
        switch json {
        case .null: self = .none
        case let .bool(b): self = .bool(b)
        case let .int(i): self = .int(i)
        case let .double(d): self = .double(d)
        case let .string(s): self = .string(s)
        case let .array(a): self = .array(a.map(Value.init(json:)))
        case let .object(pairs): self = .dict(Dict(pairs.map { ($0.0, Value(json: $0.1)) }))
        }
    }

    var isUndefined: Bool { if case .undefined = self { return true }; return false }

    /// Python's truth value.
    var truthy: Bool {
        switch self {
        case .undefined, .none: return false
        case let .bool(b): return b
        case let .int(i): return i != 0
        case let .double(d): return d != 0
        case let .string(s): return !s.isEmpty
        case let .array(a): return !a.isEmpty
        case let .dict(d): return d.count > 0
        case .namespace, .macro, .function: return true
        }
    }

    var typeName: String {
        switch self {
        case .undefined: return "undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .array: return "list"
        case .dict: return "dict"
        case .namespace: return "Namespace"
        case .macro: return "macro"
        case .function: return "function"
        }
    }

    /// Python's `str(x)`: what `{{ x }}` prints.
    var str: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case let .bool(b): return b ? "True" : "False"
        case let .int(i): return String(i)
        case let .double(d): return pythonFloatRepr(d)
        case let .string(s): return s
        case .array, .dict: return repr
        case .namespace: return "<Namespace>"
        case let .macro(m): return "<Macro '\(m.name)'>"
        case let .function(f): return "<function \(f.name)>"
        }
    }

    /// Python's `repr(x)`: strings quoted, inside lists and dicts.
    var repr: String {
        switch self {
        case let .string(s): return Value.pythonStringRepr(s)
        case let .array(a): return "[" + a.map(\.repr).joined(separator: ", ") + "]"
        case let .dict(d): return "{" + d.pairs.map { Value.pythonStringRepr($0.0) + ": " + $0.1.repr }.joined(separator: ", ") + "}"
        default: return str
        }
    }

    static func pythonStringRepr(_ s: String) -> String {
        let q: Character = s.contains("'") && !s.contains("\"") ? "\"" : "'"
        var out = String(q)
        for u in s.unicodeScalars {
            switch u {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if Character(u) == q { out += "\\" + String(q) }
                else if u.value < 0x20 || u.value == 0x7F { out += "\\x" + (u.value < 0x10 ? "0" : "") + String(u.value, radix: 16) }
                else { out.unicodeScalars.append(u) }
            }
        }
        return out + String(q)
    }

    /// Python's `==`.
    func equals(_ o: Value) -> Bool {
        switch (self, o) {
        case (.undefined, .undefined), (.none, .none): return true
        case let (.string(a), .string(b)): return a.unicodeScalars.elementsEqual(b.unicodeScalars)
        case let (.array(a), .array(b)): return a.count == b.count && zip(a, b).allSatisfy { $0.equals($1) }
        case let (.dict(a), .dict(b)):
            return a.count == b.count && a.keys.allSatisfy { k in b[k].map { a[k]!.equals($0) } ?? false }
        case let (.namespace(a), .namespace(b)): return a === b
        default:
            if let x = numeric, let y = o.numeric { return x == y }
            return false
        }
    }

    /// Numbers (and booleans, which are ints in Python) as Double, for comparison.
    var numeric: Double? {
        switch self {
        case let .bool(b): return b ? 1 : 0
        case let .int(i): return Double(i)
        case let .double(d): return d
        default: return nil
        }
    }

    var intValue: Int? {
        switch self {
        case let .bool(b): return b ? 1 : 0
        case let .int(i): return i
        default: return nil
        }
    }

    /// The items of an iterable (a dict's keys, a string's characters); nil when not iterable.
    var iterated: [Value]? {
        switch self {
        case .undefined: return []
        case let .array(a): return a
        case let .dict(d): return d.keys.map { .string($0) }
        case let .string(s): return s.unicodeScalars.map { .string(String($0)) }
        case let .namespace(n): return n.values.keys.map { .string($0) }
        default: return nil
        }
    }

    /// The JSON of a value (`tojson`); undefined values and functions cannot be serialized.
    func json() throws -> JSONValue {
        switch self {
        case .none: return .null
        case let .bool(b): return .bool(b)
        case let .int(i): return .int(i)
        case let .double(d): return .double(d)
        case let .string(s): return .string(s)
        case let .array(a): return .array(try a.map { try $0.json() })
        case let .dict(d): return .object(try d.pairs.map { ($0.0, try $0.1.json()) })
        default: throw EvalError("Object of type \(typeName == "undefined" ? "Undefined" : typeName) is not JSON serializable")
        }
    }
}

/// An evaluation error without a line yet (the statement adds it).
struct EvalError: Error {
    let message: String
    init(_ m: String) { message = m }
}

/// The control flow signals of `{% break %}` and `{% continue %}`.
enum LoopSignal: Error { case breakLoop, continueLoop }
