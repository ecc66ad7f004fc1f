import Foundation
import StrataJSON

/// A JSON Schema compiled to a grammar (GBNF text, read by `Grammar(gbnf:)`) whose every text is
/// JSON valid against the schema: what `response_format: json_schema` and forced tool calls
/// sample under. The JSON is compact (one optional space after `:` and `,`, none elsewhere) and
/// properties come in the schema's order, required ones always, optional ones or not; numbers
/// have at most 16 integer, 15 fraction and 2 exponent digits. The language may be smaller than the schema's
/// (additional properties are never produced), never larger: a keyword that would need more is
/// refused by name (`Unsupported`), never ignored.
///
/// Read: `type` (one or a list), `properties`, `required`, `additionalProperties`, `items`,
/// `prefixItems`, `minItems`, `maxItems`, `enum`, `const`, `anyOf`, `oneOf` (when its branches
/// have distinct types, so at most one can match), `allOf` of one schema, `$ref` to `#/$defs/...`
/// or `#/definitions/...` (recursion allowed), `minLength`, `maxLength`, `format` (`date`,
/// `time`, `date-time`, `uuid`), `minimum`/`maximum` on integers (a range of at most 1000
/// values, or a lower bound of 0 or 1 alone), `minimum: 0` on numbers. Annotations (`title`,
/// `description`, `default`, `examples`, `$schema`, `$id`, `$comment`, `deprecated`, `readOnly`,
/// `writeOnly`) are read as the annotations they are.
public enum JSONSchemaGrammar {
    public struct Unsupported: Error, CustomStringConvertible, Equatable, Sendable {
        /// the keyword refused
        public let keyword: String
        /// where in the schema (a JSON pointer)
        public let path: String
        public let reason: String
        public var description: String { "keyword '\(keyword)' at \(path.isEmpty ? "#" : path): \(reason)" }
    }

    static let annotations: Set<String> = ["title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly", "$defs", "definitions"]

    /// The rules every schema grammar may use.
    static let base = #"""
    ws ::= " "?
    json-char ::= [^"\\\x00-\x1f] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})
    json-string ::= "\"" json-char* "\""
    json-integer ::= "-"? ("0" | [1-9] [0-9]{0,15})
    json-number ::= "-"? ("0" | [1-9] [0-9]{0,15}) ("." [0-9]{1,15})? ([eE] [-+]? [0-9]{1,2})?
    json-boolean ::= "true" | "false"
    json-null ::= "null"
    json-value ::= json-object | json-array | json-string | json-number | json-boolean | json-null
    json-object ::= "{" (json-string ":" ws json-value ("," ws json-string ":" ws json-value)*)? "}"
    json-array ::= "[" (json-value ("," ws json-value)*)? "]"
    """#

    /// Any JSON object (`response_format: json_object`).
    public static let objectGrammar = "root ::= json-object\n" + base

    /// The grammar of `schema`. Throws `Unsupported` naming a keyword it cannot enforce.
    public static func gbnf(schema: JSONValue) throws -> String {
        var rules = Rules()
        let top = try rules.add(schema: schema, hint: "root")
        return "root ::= \(top)\n" + rules.text
    }

    /// Several schemas' rules in one grammar (forced tool calls: one per tool's parameters).
    public struct Rules {
        var lines = ""
        var names: Set<String> = []
        public init() {}
        /// Compiles `schema`; returns the expression that matches it (rule names start with `hint`).
        public mutating func add(schema: JSONValue, hint: String) throws -> String {
            var c = Compiler(root: schema)
            c.names = names
            let top = try c.compile(schema, path: "", hint: hint)
            for (name, body) in c.rules { lines += "\(name) ::= \(body)\n" }
            names = c.names
            return top
        }
        /// The rules and the base rules (`json-value`, `ws`, ...); the caller writes `root`.
        public var text: String { lines + JSONSchemaGrammar.base }
    }

    /// The grammar of `schema`, read.
    public static func grammar(schema: JSONValue) throws -> Grammar { try Grammar(gbnf: gbnf(schema: schema)) }

    /// A GBNF string literal of `s`'s text: its JSON string literal, whose escapes GBNF reads.
    static func literal(_ s: String) -> String { JSONValue.string(s).compact }

    struct Compiler {
        let root: JSONValue
        var rules: [(String, String)] = []
        var names: Set<String> = []
        var refs: [String: String] = [:]

        init(root: JSONValue) { self.root = root }

        mutating func add(_ hint: String, _ body: String) -> String {
            var base = String(hint.unicodeScalars.map { c in
                (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") ? Character(c) : "-"
            })
            if base.isEmpty || base.first == "-" { base = "r" + base }
            var name = base, k = 1
            while names.contains(name) || name.hasPrefix("json-") || name == "ws" || name == "root" { k += 1; name = "\(base)-\(k)" }
            names.insert(name)
            rules.append((name, body))
            return name
        }

        func fail(_ keyword: String, _ path: String, _ reason: String) -> Unsupported {
            Unsupported(keyword: keyword, path: path, reason: reason)
        }

        /// An expression (a rule name or a parenthesized group) for `schema`.
        mutating func compile(_ schema: JSONValue, path: String, hint: String) throws -> String {
            switch schema {
            case .bool(true): return "json-value"
            case .bool(false): throw fail("false", path, "a schema that no value satisfies")
            case .object: break
            default: throw fail("(schema)", path, "a schema is an object or a boolean, got \(schema.typeName)")
            }
            guard case let .object(pairs) = schema else { return "json-value" }
            let keys = Set(pairs.map(\.0))
            if let r = schema["$ref"] {
                guard case let .string(ref) = r else { throw fail("$ref", path, "expected a string") }
                if let other = keys.subtracting(JSONSchemaGrammar.annotations).subtracting(["$ref"]).sorted().first {
                    throw fail(other, path, "beside '$ref' (only annotations may sit beside it)")
                }
                return try reference(ref, path: path + "/$ref")
            }
            if let c = schema["const"] { return JSONSchemaGrammar.literal(c.compact) }
            if let e = schema["enum"] {
                guard case let .array(items) = e, !items.isEmpty else { throw fail("enum", path, "expected a non-empty array") }
                let alts = items.map { JSONSchemaGrammar.literal($0.compact) }
                return "(" + alts.joined(separator: " | ") + ")"
            }
            for k in ["anyOf", "oneOf"] {
                guard let v = schema[k] else { continue }
                guard case let .array(branches) = v, !branches.isEmpty else { throw fail(k, path, "expected a non-empty array of schemas") }
                if let other = keys.subtracting(JSONSchemaGrammar.annotations).subtracting([k]).sorted().first {
                    throw fail(other, path, "beside '\(k)' (move it into each branch)")
                }
                if k == "oneOf" {
                    // exactly one branch must match: only branches of distinct, non-overlapping types
                    var seen: Set<String> = []
                    for b in branches {
                        guard case let .string(t)? = b["type"], !(t == "integer" && seen.contains("number")), !(t == "number" && seen.contains("integer")),
                              seen.insert(t).inserted else {
                            throw fail("oneOf", path, "only branches each with a distinct 'type' can be enforced (use anyOf when several may match)")
                        }
                    }
                }
                var alts: [String] = []
                for (i, b) in branches.enumerated() { alts.append(try compile(b, path: "\(path)/\(k)/\(i)", hint: "\(hint)-\(i)")) }
                return "(" + alts.joined(separator: " | ") + ")"
            }
            if let v = schema["allOf"] {
                guard case let .array(items) = v, items.count == 1 else { throw fail("allOf", path, "only an allOf of one schema is supported") }
                return try compile(items[0], path: path + "/allOf/0", hint: hint)
            }
            var types: [String] = []
            switch schema["type"] {
            case nil: types = []
            case let .string(t)?: types = [t]
            case let .array(ts)?:
                types = try ts.map { t in
                    guard case let .string(s) = t else { throw fail("type", path, "expected type names") }
                    return s
                }
            case let v?: throw fail("type", path, "expected a string or an array, got \(v.typeName)")
            }
            let known = JSONSchemaGrammar.annotations.union(["type", "properties", "required", "additionalProperties", "items", "prefixItems",
                                                             "minItems", "maxItems", "minLength", "maxLength", "format", "minimum", "maximum", "uniqueItems"])
            if let k = pairs.map(\.0).first(where: { !known.contains($0) }) {
                throw fail(k, path, "not supported for structured output (a value could break it)")
            }
            if types.isEmpty {
                // no type: what the other keywords say, else any value
                if keys.contains("properties") || keys.contains("additionalProperties") || keys.contains("required") { types = ["object"] }
                else if keys.contains("items") || keys.contains("prefixItems") { types = ["array"] }
                else if keys.intersection(["minLength", "maxLength", "format"]).count > 0 { types = ["string"] }
                else if keys.intersection(["minimum", "maximum"]).count > 0 { types = ["number"] }
                else { return "json-value" }
            }
            var alts: [String] = []
            for t in types {
                switch t {
                case "string": alts.append(try string(schema, path: path, hint: hint))
                case "integer": alts.append(try integer(schema, path: path, hint: hint))
                case "number": alts.append(try number(schema, path: path))
                case "boolean": alts.append("json-boolean")
                case "null": alts.append("json-null")
                case "object": alts.append(try object(schema, path: path, hint: hint))
                case "array": alts.append(try array(schema, path: path, hint: hint))
                default: throw fail("type", path, "unknown type '\(t)'")
                }
            }
            return alts.count == 1 ? alts[0] : "(" + alts.joined(separator: " | ") + ")"
        }

        mutating func reference(_ ref: String, path: String) throws -> String {
            if let n = refs[ref] { return n }
            var target: JSONValue = root
            let parts = ref.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.first == "#", parts.count >= 2 else { throw fail("$ref", path, "only references inside the schema ('#/...') are supported, got '\(ref)'") }
            for p in parts.dropFirst() {
                let key = p.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
                guard let next = target[key] else { throw fail("$ref", path, "'\(ref)' points at nothing") }
                target = next
            }
            // name it first: a recursive reference uses the name
            let name = add("ref-" + (parts.last.map(String.init) ?? "x"), "")
            refs[ref] = name
            let body = try compile(target, path: String(ref.dropFirst()), hint: name)
            if let i = rules.firstIndex(where: { $0.0 == name }) { rules[i].1 = body }
            return name
        }

        func count(_ schema: JSONValue, _ k: String, path: String) throws -> Int? {
            guard let v = schema[k] else { return nil }
            guard case let .int(n) = v, n >= 0, n <= 10_000 else { throw fail(k, path, "expected an integer in 0...10000") }
            return n
        }

        mutating func string(_ schema: JSONValue, path: String, hint: String) throws -> String {
            let lo = try count(schema, "minLength", path: path), hi = try count(schema, "maxLength", path: path)
            if let f = schema["format"] {
                guard lo == nil && hi == nil else { throw fail("format", path, "with minLength or maxLength") }
                switch f.stringValue {
                case "date": return add(hint + "-date", #""\"" [0-9]{4} "-" ("0" [1-9] | "1" [0-2]) "-" ("0" [1-9] | [12] [0-9] | "3" [01]) "\"""#)
                case "time": return add(hint + "-time", #""\"" ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,6})? ("Z" | [+-] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9]) "\"""#)
                case "date-time": return add(hint + "-date-time", #""\"" [0-9]{4} "-" ("0" [1-9] | "1" [0-2]) "-" ("0" [1-9] | [12] [0-9] | "3" [01]) "T" ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,6})? ("Z" | [+-] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9]) "\"""#)
                case "uuid": return add(hint + "-uuid", #""\"" [0-9a-f]{8} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{12} "\"""#)
                default: throw fail("format", path, "format '\(f.stringValue ?? f.compact)' is not supported (date, time, date-time, uuid are)")
                }
            }
            if lo == nil && hi == nil { return "json-string" }
            let a = lo ?? 0
            if let b = hi, b < a { throw fail("maxLength", path, "below minLength") }
            return add(hint + "-string", "\"\\\"\" json-char{\(a),\(hi.map(String.init) ?? "")} \"\\\"\"")
        }

        func bound(_ schema: JSONValue, _ k: String, path: String) throws -> Double? {
            guard let v = schema[k] else { return nil }
            switch v {
            case let .int(i): return Double(i)
            case let .double(d): return d
            default: throw fail(k, path, "expected a number")
            }
        }

        mutating func integer(_ schema: JSONValue, path: String, hint: String) throws -> String {
            let lo = try bound(schema, "minimum", path: path), hi = try bound(schema, "maximum", path: path)
            switch (lo, hi) {
            case (nil, nil): return "json-integer"
            case let (a?, b?):
                let l = Int(a.rounded(.up)), h = Int(b.rounded(.down))
                guard h >= l else { throw fail("maximum", path, "below minimum: no integer satisfies both") }
                guard h - l <= 1000 else { throw fail("maximum", path, "ranges of more than 1000 integers are not supported") }
                return add(hint + "-range", (l...h).map { JSONSchemaGrammar.literal(String($0)) }.joined(separator: " | "))
            case let (a?, nil) where a == 0: return add(hint + "-nonneg", #""0" | [1-9] [0-9]{0,15}"#)
            case let (a?, nil) where a == 1: return add(hint + "-pos", #"[1-9] [0-9]{0,15}"#)
            case (_?, nil): throw fail("minimum", path, "a lower bound other than 0 or 1 needs a maximum too (at most 1000 values)")
            case (nil, _?): throw fail("maximum", path, "an upper bound alone is not supported (give a minimum too)")
            }
        }

        mutating func number(_ schema: JSONValue, path: String) throws -> String {
            if schema["maximum"] != nil { throw fail("maximum", path, "bounds on non-integer numbers are not supported") }
            if let m = try bound(schema, "minimum", path: path) {
                guard m == 0 else { throw fail("minimum", path, "only minimum 0 is supported on non-integer numbers") }
                return add("nonneg-number", #"("0" | [1-9] [0-9]{0,15}) ("." [0-9]{1,15})? ([eE] [-+]? [0-9]{1,2})?"#)
            }
            return "json-number"
        }

        mutating func object(_ schema: JSONValue, path: String, hint: String) throws -> String {
            var props: [(String, JSONValue)] = []
            if let p = schema["properties"] {
                guard case let .object(ps) = p else { throw fail("properties", path, "expected an object") }
                props = ps
            }
            var required: Set<String> = []
            if let r = schema["required"] {
                guard case let .array(items) = r else { throw fail("required", path, "expected an array of names") }
                for x in items {
                    guard case let .string(s) = x else { throw fail("required", path, "expected names") }
                    required.insert(s)
                }
            }
            let additional = schema["additionalProperties"]
            // required names without a property schema take additionalProperties' schema
            for name in required.sorted() where !props.contains(where: { $0.0 == name }) {
                switch additional {
                case .bool(false)?: throw fail("required", path, "'\(name)' is required but additionalProperties is false and it has no property schema")
                case nil, .bool(true)?: props.append((name, .bool(true)))
                case let s?: props.append((name, s))
                }
            }
            if props.isEmpty {
                switch additional {
                case .bool(false)?: return JSONSchemaGrammar.literal("{}")
                case nil, .bool(true)?: return "json-object"
                case let s?:
                    let v = try compile(s, path: path + "/additionalProperties", hint: hint + "-value")
                    return add(hint + "-map", #""{" (json-string ":" ws \#(v) ("," ws json-string ":" ws \#(v))*)? "}""#)
                }
            }
            // properties in order: first_i (none written yet) and after_i (some written) for i = n..1
            var kv: [String] = []
            for (name, s) in props {
                let v = try compile(s, path: path + "/properties/" + name, hint: hint + "-" + name)
                kv.append(JSONSchemaGrammar.literal(JSONValue.string(name).compact) + " \":\" ws " + v)
            }
            var first = "", after = ""   // "" is the empty rest
            for i in stride(from: props.count - 1, through: 0, by: -1) {
                let req = required.contains(props[i].0)
                let a = after.isEmpty ? "" : " " + after
                let newAfter = add("\(hint)-after-\(i)", req ? "\",\" ws \(kv[i])\(a)" : "(\",\" ws \(kv[i]))?\(a)")
                let newFirst = add("\(hint)-first-\(i)", req ? "\(kv[i])\(a)" : "\(kv[i])\(a) | \(first.isEmpty ? "\"\"" : first)")
                after = newAfter; first = newFirst
            }
            return add(hint + "-object", "\"{\" \(first) \"}\"")
        }

        mutating func array(_ schema: JSONValue, path: String, hint: String) throws -> String {
            if let u = schema["uniqueItems"], u != .bool(false) { throw fail("uniqueItems", path, "unique items cannot be enforced by a grammar") }
            let lo = try count(schema, "minItems", path: path) ?? 0, hi = try count(schema, "maxItems", path: path)
            if let h = hi, h < lo { throw fail("maxItems", path, "below minItems") }
            var prefix: [String] = []
            if let p = schema["prefixItems"] {
                guard case let .array(items) = p else { throw fail("prefixItems", path, "expected an array of schemas") }
                for (i, s) in items.enumerated() { prefix.append(try compile(s, path: "\(path)/prefixItems/\(i)", hint: "\(hint)-\(i)")) }
            }
            var item: String? = "json-value"
            switch schema["items"] {
            case nil, .bool(true)?: break
            case .bool(false)?: item = nil
            case let s?: item = try compile(s, path: path + "/items", hint: hint + "-item")
            }
            if prefix.isEmpty {
                guard let item else {
                    guard lo == 0 else { throw fail("minItems", path, "items: false allows no item") }
                    return "\"[]\""
                }
                if hi == 0 { return "\"[]\"" }
                let more = hi.map { "{\(max(lo, 1) - 1),\($0 - 1)}" } ?? (lo > 1 ? "{\(lo - 1),}" : "*")
                let body = "\(item) (\",\" ws \(item))\(more)"
                return add(hint + "-array", lo == 0 ? "\"[\" (\(body))? \"]\"" : "\"[\" \(body) \"]\"")
            }
            // a tuple: the prefix items, then (when allowed) more items
            guard lo <= prefix.count || item != nil else { throw fail("minItems", path, "more items than prefixItems with items: false") }
            var body = prefix[0]
            for p in prefix.dropFirst() { body += " \",\" ws \(p)" }
            if let item, hi.map({ $0 > prefix.count }) ?? true {
                let extraLo = max(0, lo - prefix.count)
                let more = hi.map { "{\(extraLo),\($0 - prefix.count)}" } ?? (extraLo > 0 ? "{\(extraLo),}" : "*")
                body += " (\",\" ws \(item))\(more)"
            }
            // fewer than all prefix items is allowed by JSON Schema; the grammar writes them all
            // unless maxItems cuts the tuple
            if let h = hi, h < prefix.count { throw fail("maxItems", path, "below the number of prefixItems") }
            return add(hint + "-tuple", "\"[\" \(body) \"]\"")
        }
    }
}
