import Foundation

/// The sandbox's bounds (jinja2's `SandboxedEnvironment` is the anchor: arithmetic that would
/// overflow is an error, `range` is capped, a render has a budget of work and output). Python's
/// integers do not overflow; ours are 64-bit, so a result outside Int is an error, never a trap.
public enum Sandbox {
    /// The longest string a template can make (repetition, concatenation, padding, indentation,
    /// `tojson`), and the default bound on a render's output.
    public static let maxStringBytes = 16 << 20
    /// The most items a list can have (repetition, concatenation).
    public static let maxListItems = 1 << 20
    /// Items `range` may make (jinja2's sandbox: MAX_RANGE = 100000).
    public static let maxRange = 100_000

    /// `r` unless the operation overflowed.
    static func checked(_ r: (partialValue: Int, overflow: Bool), _ what: @autoclosure () -> String) throws -> Int {
        if r.overflow { throw EvalError("integer overflow in \(what()) (the sandbox's integers are 64-bit)") }
        return r.partialValue
    }

    /// A width or count used to pad or repeat: refused past `maxStringBytes`.
    static func width(_ n: Int, _ what: String) throws -> Int {
        if n > maxStringBytes { throw EvalError("\(what) \(n) too large (at most \(maxStringBytes))") }
        return max(0, n)
    }

    static func string(_ s: String, _ what: @autoclosure () -> String) throws -> String {
        if s.utf8.count > maxStringBytes { throw EvalError("\(what()) makes a string larger than \(maxStringBytes) bytes") }
        return s
    }
}

/// Python's arithmetic and comparison operators.
enum Operators {
    static func binary(_ op: String, _ a: Value, _ b: Value) throws -> Value {
        switch (op, a, b) {
        case let ("+", .string(x), .string(y)):
            if x.utf8.count + y.utf8.count > Sandbox.maxStringBytes { throw EvalError("string concatenation larger than \(Sandbox.maxStringBytes) bytes") }
            return .string(x + y)
        case let ("+", .array(x), .array(y)):
            if x.count + y.count > Sandbox.maxListItems { throw EvalError("list concatenation longer than \(Sandbox.maxListItems) items") }
            return .array(x + y)
        case let ("*", .string(s), n), let ("*", n, .string(s)):
            guard let k = n.intValue else { break }
            let (bytes, o) = max(0, k).multipliedReportingOverflow(by: s.utf8.count)
            guard !o, bytes <= Sandbox.maxStringBytes else { throw EvalError("string repetition too large (\(k) times \(s.utf8.count) bytes; at most \(Sandbox.maxStringBytes))") }
            // an empty string repeated 2^62 times is empty, at once (String(repeating:) would loop)
            if s.isEmpty || k <= 0 { return .string("") }
            return .string(String(repeating: s, count: k))
        case let ("*", .array(x), n), let ("*", n, .array(x)):
            guard let k = n.intValue else { break }
            let (items, o) = max(0, k).multipliedReportingOverflow(by: x.count)
            guard !o, items <= Sandbox.maxListItems else { throw EvalError("list repetition too large (\(k) times \(x.count) items; at most \(Sandbox.maxListItems))") }
            if x.isEmpty || k <= 0 { return .array([]) }
            return .array(Array([[Value]](repeating: x, count: k).joined()))
        default: break
        }
        if let x = a.intValue, let y = b.intValue {
            switch op {
            case "+": return .int(try Sandbox.checked(x.addingReportingOverflow(y), "\(x) + \(y)"))
            case "-": return .int(try Sandbox.checked(x.subtractingReportingOverflow(y), "\(x) - \(y)"))
            case "*": return .int(try Sandbox.checked(x.multipliedReportingOverflow(by: y), "\(x) * \(y)"))
            case "/":
                if y == 0 { throw EvalError("division by zero") }
                return .double(Double(x) / Double(y))
            case "//":
                if y == 0 { throw EvalError("integer division or modulo by zero") }
                if y == -1 { return .int(try Sandbox.checked(0.subtractingReportingOverflow(x), "\(x) // -1")) }
                let q = x / y
                return .int((x % y != 0 && (x < 0) != (y < 0)) ? q - 1 : q)
            case "%":
                if y == 0 { throw EvalError("integer division or modulo by zero") }
                if y == -1 { return .int(0) }
                let r = x % y
                return .int(r != 0 && (r < 0) != (y < 0) ? r + y : r)
            case "**":
                if y >= 0 {
                    var r = 1, overflow = false
                    for _ in 0..<min(y, 64) { let (m, o) = r.multipliedReportingOverflow(by: x); r = m; overflow = overflow || o }
                    if !overflow && (y <= 64 || x == 0 || x == 1) { return .int(r) }
                }
                return .double(pow(Double(x), Double(y)))
            default: break
            }
            return .double(try float(op, Double(x), Double(y)))
        }
        if a.isNumber, b.isNumber, let x = a.numeric, let y = b.numeric {
            return .double(try float(op, x, y))
        }
        throw EvalError("unsupported operand types for \(op): '\(a.typeName)' and '\(b.typeName)'")
    }

    static func float(_ op: String, _ x: Double, _ y: Double) throws -> Double {
        switch op {
        case "+": return x + y
        case "-": return x - y
        case "*": return x * y
        case "/":
            if y == 0 { throw EvalError("float division by zero") }
            return x / y
        case "//":
            if y == 0 { throw EvalError("float floor division by zero") }
            return (x / y).rounded(.down)
        case "%":
            if y == 0 { throw EvalError("float modulo") }
            let r = fmod(x, y)
            return r != 0 && (r < 0) != (y < 0) ? r + y : r
        case "**": return pow(x, y)
        default: throw EvalError("unknown operator \(op)")
        }
    }

    static func compare(_ op: String, _ a: Value, _ b: Value) throws -> Bool {
        switch op {
        case "==": return a.equals(b)
        case "!=": return !a.equals(b)
        case "in": return try contains(b, a)
        case "not in": return !(try contains(b, a))
        default: break
        }
        let c: Int
        switch (a, b) {
        case let (.string(x), .string(y)):
            c = x.unicodeScalars.lexicographicallyPrecedes(y.unicodeScalars) ? -1 : (x.unicodeScalars.elementsEqual(y.unicodeScalars) ? 0 : 1)
        default:
            guard a.isNumber, b.isNumber, let x = a.numeric, let y = b.numeric else {
                throw EvalError("'\(op)' not supported between '\(a.typeName)' and '\(b.typeName)'")
            }
            c = x < y ? -1 : (x == y ? 0 : 1)
        }
        switch op {
        case "<": return c < 0
        case "<=": return c <= 0
        case ">": return c > 0
        case ">=": return c >= 0
        default: throw EvalError("unknown comparison \(op)")
        }
    }

    static func contains(_ container: Value, _ x: Value) throws -> Bool {
        switch container {
        case let .string(s):
            guard case let .string(needle) = x else { throw EvalError("'in <string>' requires string as left operand, not \(x.typeName)") }
            return needle.isEmpty || s.contains(needle)
        case let .array(a): return a.contains { $0.equals(x) }
        case let .dict(d): if case let .string(k) = x { return d[k] != nil }; return false
        case let .namespace(ns): if case let .string(k) = x { return ns.values[k] != nil }; return false
        case .undefined: return false
        default: throw EvalError("argument of type '\(container.typeName)' is not iterable")
        }
    }
}

extension Value {
    var isNumber: Bool {
        switch self { case .int, .double, .bool: return true; default: return false }
    }
}

/// Python's `str.isspace` characters, for strip and split.
func isPythonSpace(_ c: Unicode.Scalar) -> Bool { c.properties.isWhitespace || (0x1C...0x1F).contains(c.value) }

func pyStrip(_ s: String, _ chars: String?, left: Bool, right: Bool) -> String {
    let u = Array(s.unicodeScalars)
    let set = chars.map { Set($0.unicodeScalars) }
    func strip(_ c: Unicode.Scalar) -> Bool { set.map { $0.contains(c) } ?? isPythonSpace(c) }
    var a = 0, b = u.count
    if left { while a < b, strip(u[a]) { a += 1 } }
    if right { while b > a, strip(u[b - 1]) { b -= 1 } }
    var out = String.UnicodeScalarView()
    out.append(contentsOf: u[a..<b])
    return String(out)
}

func pySplit(_ s: String, _ sep: String?, _ maxSplit: Int) -> [String] {
    guard let sep else {
        // runs of whitespace; leading and trailing whitespace gives no empty strings
        var parts: [String] = []
        var cur = String.UnicodeScalarView()
        var inWord = false
        let u = Array(s.unicodeScalars)
        var i = 0
        while i < u.count {
            let c = u[i]
            if isPythonSpace(c) {
                if inWord { parts.append(String(cur)); cur = String.UnicodeScalarView(); inWord = false }
                if maxSplit >= 0 && parts.count == maxSplit {
                    var j = i
                    while j < u.count, isPythonSpace(u[j]) { j += 1 }
                    if j < u.count { var rest = String.UnicodeScalarView(); rest.append(contentsOf: u[j...]); parts.append(String(rest)) }
                    return parts
                }
            } else {
                cur.append(c); inWord = true
            }
            i += 1
        }
        if inWord { parts.append(String(cur)) }
        return parts
    }
    var parts: [String] = []
    var rest = Substring(s)
    while maxSplit < 0 || parts.count < maxSplit, let r = rest.range(of: sep) {
        parts.append(String(rest[..<r.lowerBound]))
        rest = rest[r.upperBound...]
    }
    parts.append(String(rest))
    return parts
}

/// Python's `str.replace` (`count` < 0: every occurrence); a result beyond the sandbox's string
/// bound is an error before it is made.
func pyReplace(_ s: String, _ old: String, _ new: String, _ count: Int) throws -> String {
    if old.isEmpty { return s }
    if count < 0 {
        let n = s.components(separatedBy: old).count - 1
        let (grow, o) = n.multipliedReportingOverflow(by: max(0, new.utf8.count - old.utf8.count))
        if o || s.utf8.count + grow > Sandbox.maxStringBytes { throw EvalError("replace makes a string larger than \(Sandbox.maxStringBytes) bytes") }
        return s.replacingOccurrences(of: old, with: new)
    }
    var out = "", rest = Substring(s), n = 0
    while count < 0 || n < count, !old.isEmpty, let r = rest.range(of: old) {
        out += rest[..<r.lowerBound]
        if out.utf8.count + new.utf8.count > Sandbox.maxStringBytes { throw EvalError("replace makes a string larger than \(Sandbox.maxStringBytes) bytes") }
        out += new
        rest = rest[r.upperBound...]
        n += 1
    }
    return try Sandbox.string(out + rest, "replace")
}

func pyCapitalize(_ s: String) -> String {
    guard let f = s.unicodeScalars.first else { return s }
    return String(f).uppercased() + String(s.unicodeScalars.dropFirst()).lowercased()
}

/// Methods of strings, dicts and lists that templates call (`message.content.strip()`,
/// `message.get('x')`, `d.items()`); nil when `name` is not a method of `v`.
enum Methods {
    static func call(_ v: Value, _ name: String, _ args: [Value], _ kwargs: [(String, Value)]) throws -> Value? {
        let a = Arguments(args, kwargs)
        func str(_ i: Int, _ n: String) throws -> String? {
            guard let x = a.get(i, n), !x.isNoneLike else { return nil }
            guard case let .string(s) = x else { throw EvalError("\(name)() argument must be a string, not \(x.typeName)") }
            return s
        }
        switch v {
        case let .string(s):
            switch name {
            case "strip": return .string(pyStrip(s, try str(0, "chars"), left: true, right: true))
            case "lstrip": return .string(pyStrip(s, try str(0, "chars"), left: true, right: false))
            case "rstrip": return .string(pyStrip(s, try str(0, "chars"), left: false, right: true))
            case "upper": return .string(s.uppercased())
            case "lower": return .string(s.lowercased())
            case "capitalize": return .string(pyCapitalize(s))
            case "title": return .string(Filters.title(s))
            case "split", "rsplit":
                let maxSplit = a.get(1, "maxsplit")?.intValue ?? -1
                if name == "rsplit", maxSplit >= 0 {
                    let sep = try str(0, "sep")
                    let all = pySplit(s, sep, -1)
                    if all.count <= maxSplit + 1 { return .array(all.map { .string($0) }) }
                    let head = all[0..<(all.count - maxSplit)].joined(separator: sep ?? " ")
                    return .array(([head] + all[(all.count - maxSplit)...]).map { .string($0) })
                }
                return .array(pySplit(s, try str(0, "sep"), maxSplit).map { .string($0) })
            case "splitlines": return .array(s.split(omittingEmptySubsequences: false) { $0 == "\n" }.map { .string(String($0)) }.dropLast(s.hasSuffix("\n") ? 1 : 0))
            case "startswith", "endswith":
                let x = a.get(0, "prefix") ?? Value.none
                let options: [Value] = { if case let .array(o) = x { return o }; return [x] }()
                for o in options {
                    guard case let .string(p) = o else { throw EvalError("\(name) first arg must be str or a tuple of str") }
                    if name == "startswith" ? s.unicodeScalars.starts(with: p.unicodeScalars) : s.unicodeScalars.reversed().starts(with: p.unicodeScalars.reversed()) {
                        return .bool(true)
                    }
                }
                return .bool(false)
            case "replace":
                guard let old = try str(0, "old"), let new = try str(1, "new") else { throw EvalError("replace() takes two strings") }
                return .string(try pyReplace(s, old, new, a.get(2, "count")?.intValue ?? -1))
            case "find", "rfind", "index", "count":
                guard let sub = try str(0, "sub") else { throw EvalError("\(name)() takes a string") }
                if name == "count" { return .int(sub.isEmpty ? s.unicodeScalars.count + 1 : s.components(separatedBy: sub).count - 1) }
                let r = name == "rfind" ? s.range(of: sub, options: .backwards) : s.range(of: sub)
                guard let r else {
                    if name == "index" { throw EvalError("substring not found") }
                    return .int(-1)
                }
                return .int(s.unicodeScalars.distance(from: s.startIndex, to: r.lowerBound))
            case "join":
                guard let items = a.get(0, "iterable")?.iterated else { throw EvalError("join() takes an iterable") }
                return .string(try Sandbox.string(items.map(\.str).joined(separator: s), "join"))
            case "isdigit": return .bool(!s.isEmpty && s.unicodeScalars.allSatisfy { $0.properties.numericType == .decimal })
            case "isspace": return .bool(!s.isEmpty && s.unicodeScalars.allSatisfy(isPythonSpace))
            case "isalpha": return .bool(!s.isEmpty && s.unicodeScalars.allSatisfy { $0.properties.isAlphabetic })
            case "islower": return .bool(s.lowercased() == s && s.uppercased() != s)
            case "isupper": return .bool(s.uppercased() == s && s.lowercased() != s)
            default: return nil
            }
        case let .dict(d):
            switch name {
            case "get":
                guard case let .string(k)? = a.get(0, "key") else { return a.get(1, "default") ?? Value.none }
                return d[k] ?? a.get(1, "default") ?? Value.none
            case "items": return .array(d.pairs.map { .array([.string($0.0), $0.1]) })
            case "keys": return .array(d.keys.map { .string($0) })
            case "values": return .array(d.pairs.map { $0.1 })
            default: return nil
            }
        case let .array(x):
            switch name {
            case "index":
                guard let needle = a.get(0, "value"), let i = x.firstIndex(where: { $0.equals(needle) }) else { throw EvalError("value is not in list") }
                return .int(i)
            case "count":
                guard let needle = a.get(0, "value") else { throw EvalError("count() takes a value") }
                return .int(x.filter { $0.equals(needle) }.count)
            case "append", "extend", "pop", "insert", "remove", "clear", "sort", "reverse":
                throw EvalError("the sandbox does not let a template modify a list ('\(name)')")
            default: return nil
            }
        default:
            return nil
        }
    }
}

/// jinja2's built-in filters (and transformers' `tojson`).
enum Filters {
    static func title(_ s: String) -> String {
        // jinja2: words begin after runs of -, whitespace, ( { [ <
        var out = ""
        var start = true
        for c in s.unicodeScalars {
            if c == "-" || isPythonSpace(c) || "({[<".unicodeScalars.contains(c) {
                out.unicodeScalars.append(c); start = true
            } else if start {
                out += String(c).uppercased(); start = false
            } else {
                out += String(c).lowercased()
            }
        }
        return out
    }

    static func apply(_ name: String, _ v: Value, _ a: Arguments, context: Context) throws -> Value {
        func string(_ x: Value) -> String { x.str }
        func iterable(_ x: Value) throws -> [Value] {
            guard let items = x.iterated else { throw EvalError("'\(x.typeName)' object is not iterable (filter \(name))") }
            return items
        }
        func attr(_ x: Value, _ path: String) -> Value {
            var cur = x
            for part in path.split(separator: ".") {
                if let i = Int(part), case let .array(arr) = cur { cur = i >= 0 && i < arr.count ? arr[i] : .undefined(String(part)); continue }
                switch cur {
                case let .dict(d): cur = d[String(part)] ?? .undefined(String(part))
                case let .namespace(ns): cur = ns.values[String(part)] ?? .undefined(String(part))
                default: return .undefined(String(part))
                }
            }
            return cur
        }
        switch name {
        case "trim": 
            guard let c = a.get(0, "chars"), !c.isNoneLike else { return .string(pyStrip(string(v), nil, left: true, right: true)) }
            return .string(pyStrip(string(v), c.str, left: true, right: true))
        case "upper": return .string(string(v).uppercased())
        case "lower": return .string(string(v).lowercased())
        case "capitalize": return .string(pyCapitalize(string(v)))
        case "title": return .string(title(string(v)))
        case "string": return .string(string(v))
        case "safe", "e", "escape", "forceescape":
            if name == "safe" { return v.isUndefined ? .string("") : v }
            return .string(string(v).replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "'", with: "&#39;").replacingOccurrences(of: "\"", with: "&#34;"))
        case "length", "count":
            switch v {
            case let .string(s): return .int(s.unicodeScalars.count)
            case let .array(x): return .int(x.count)
            case let .dict(d): return .int(d.count)
            case .undefined: return .int(0)
            case let .namespace(ns): return .int(ns.values.count)
            default: throw EvalError("object of type '\(v.typeName)' has no len()")
            }
        case "default", "d":
            let boolean = a.get(1, "boolean")?.truthy ?? false
            if v.isUndefined || (boolean && !v.truthy) { return a.get(0, "default_value") ?? .string("") }
            return v
        case "join":
            let sep = a.get(0, "d")?.str ?? ""
            var items = try iterable(v)
            if let at = a.get(1, "attribute"), !at.isNoneLike { items = items.map { attr($0, at.str) } }
            return .string(try Sandbox.string(items.map(string).joined(separator: sep), "join"))
        case "items":
            switch v {
            case .undefined: return .array([])
            case let .dict(d): return .array(d.pairs.map { .array([.string($0.0), $0.1]) })
            default: throw EvalError("items filter: expected a mapping, got \(v.typeName)")
            }
        case "list": return .array(try iterable(v))
        case "first": return try iterable(v).first ?? .undefined("first")
        case "last":
            if case let .string(s) = v { return s.unicodeScalars.last.map { .string(String($0)) } ?? .undefined("last") }
            return try iterable(v).last ?? .undefined("last")
        case "reverse":
            if case let .string(s) = v { return .string(String(String.UnicodeScalarView(s.unicodeScalars.reversed()))) }
            return .array(try iterable(v).reversed())
        case "unique":
            // jinja2's: a set of keys (1 == 1.0 == True, as in Python), strings compared without
            // case unless case_sensitive, by an attribute when given; lists and dicts are unhashable
            let caseSensitive = a.get(0, "case_sensitive")?.truthy ?? false
            let at = a.get(1, "attribute").flatMap { $0.isNoneLike ? nil : $0.str }
            var out: [Value] = [], keys = Set<String>()
            for x in try iterable(v) {
                let k = at.map { attr(x, $0) } ?? x
                let key: String
                switch k {
                case let .string(s): key = "s" + (caseSensitive ? s : s.lowercased())
                case .none: key = "n"
                case .int, .double, .bool: key = "d" + String(k.numeric!)
                case .undefined: key = "u"
                default: throw EvalError("unhashable type: '\(k.typeName)' (filter unique)")
                }
                if keys.insert(key).inserted { out.append(x) }
            }
            return .array(out)
        case "sort":
            let reverse = a.get(0, "reverse")?.truthy ?? false
            let caseSensitive = a.get(1, "case_sensitive")?.truthy ?? false
            let at = a.get(2, "attribute").flatMap { $0.isNoneLike ? nil : $0.str }
            func key(_ x: Value) -> Value {
                let k = at.map { attr(x, $0) } ?? x
                if !caseSensitive, case let .string(s) = k { return .string(s.lowercased()) }
                return k
            }
            var err: Error? = nil
            let sorted = try iterable(v).enumerated().sorted { l, r in
                do {
                    if try Operators.compare("<", key(l.element), key(r.element)) { return !reverse }
                    if try Operators.compare("<", key(r.element), key(l.element)) { return reverse }
                } catch { err = error }
                return l.offset < r.offset
            }.map(\.element)
            if let err { throw err }
            return .array(sorted)
        case "dictsort":
            guard case let .dict(d) = v else { throw EvalError("dictsort: expected a mapping") }
            return .array(d.pairs.sorted { $0.0.lowercased() < $1.0.lowercased() }.map { .array([.string($0.0), $0.1]) })
        case "sum":
            var total: Value = a.get(1, "start") ?? .int(0)
            let at = a.get(0, "attribute").flatMap { $0.isNoneLike ? nil : $0.str }
            for x in try iterable(v) { total = try Operators.binary("+", total, at.map { attr(x, $0) } ?? x) }
            return total
        case "min", "max":
            let items = try iterable(v)
            guard var best = items.first else { return .undefined(name) }
            for x in items.dropFirst() where try Operators.compare(name == "min" ? "<" : ">", x, best) { best = x }
            return best
        case "abs":
            switch v {
            case let .int(i): return .int(try Sandbox.checked(i < 0 ? 0.subtractingReportingOverflow(i) : (i, false), "abs(\(i))"))
            case let .double(d): return .double(abs(d))
            default: throw EvalError("bad operand type for abs(): '\(v.typeName)'")
            }
        case "round":
            guard let x = v.numeric else { throw EvalError("round: expected a number") }
            let p = a.get(0, "precision")?.intValue ?? 0
            let method = a.get(1, "method")?.str ?? "common"
            let m = pow(10.0, Double(p))
            let r: Double
            switch method {
            case "ceil": r = (x * m).rounded(.up) / m
            case "floor": r = (x * m).rounded(.down) / m
            default: r = (x * m).rounded(.toNearestOrEven) / m   // Python round(): half to even
            }
            return .double(r)
        case "int":
            let dflt = a.get(0, "default") ?? .int(0)
            switch v {
            case let .int(i): return .int(i)
            case let .bool(b): return .int(b ? 1 : 0)
            case let .double(d): return d.isFinite && abs(d) < 9e18 ? .int(Int(d)) : dflt
            case let .string(s):
                let t = s.trimmingCharacters(in: .whitespaces)
                if let i = Int(t) { return .int(i) }
                if let d = Double(t), d.isFinite, abs(d) < 9e18 { return .int(Int(d)) }
                return dflt
            default: return dflt
            }
        case "float":
            let dflt = a.get(0, "default") ?? .double(0)
            switch v {
            case let .int(i): return .double(Double(i))
            case let .bool(b): return .double(b ? 1 : 0)
            case let .double(d): return .double(d)
            case let .string(s): return Double(s.trimmingCharacters(in: .whitespaces)).map { .double($0) } ?? dflt
            default: return dflt
            }
        case "replace":
            guard let old = a.get(0, "old"), let new = a.get(1, "new") else { throw EvalError("replace filter takes two arguments") }
            return .string(try pyReplace(string(v), old.str, new.str, a.get(2, "count").flatMap { $0.isNoneLike ? nil : $0.intValue } ?? -1))
        case "indent":
            let w = a.get(0, "width") ?? .int(4)
            let indention: String
            if case let .string(s) = w { indention = s } else { indention = String(repeating: " ", count: try Sandbox.width(w.intValue ?? 4, "indent width")) }
            let first = a.get(1, "first")?.truthy ?? false
            let blank = a.get(2, "blank")?.truthy ?? false
            let lines = (string(v) + "\n").split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
            let (pad, o) = indention.utf8.count.multipliedReportingOverflow(by: lines.count + 1)
            if o || pad + string(v).utf8.count > Sandbox.maxStringBytes { throw EvalError("indent makes a string larger than \(Sandbox.maxStringBytes) bytes") }
            var rv: String
            if blank {
                rv = lines.joined(separator: "\n" + indention)
            } else {
                rv = lines.first ?? ""
                if lines.count > 1 { rv += "\n" + lines.dropFirst().map { $0.isEmpty ? $0 : indention + $0 }.joined(separator: "\n") }
            }
            return .string(first ? indention + rv : rv)
        case "wordcount": return .int(pySplit(string(v), nil, -1).count)
        case "tojson":
            let indentArg = a.get(1, "indent") ?? a.get(0, "indent")
            var indent: String? = nil
            if let i = indentArg, !i.isNoneLike {
                if case let .string(s) = i { indent = s } else if let n = i.intValue { indent = String(repeating: " ", count: try Sandbox.width(n, "tojson indent")) }
            }
            var item: String? = nil, key = ": "
            if let seps = a.get(2, "separators"), case let .array(p) = seps, p.count == 2 { item = p[0].str; key = p[1].str }
            let sortKeys = a.get(3, "sort_keys")?.truthy ?? false
            let json = try v.json()
            if let indent, !indent.isEmpty {
                // each line repeats the indent once per level: bound the text before making it
                let (lines, depth) = json.shape
                let (bytes, o) = lines.multipliedReportingOverflow(by: depth * indent.utf8.count)
                if o || bytes > Sandbox.maxStringBytes { throw EvalError("tojson with this indent makes a string larger than \(Sandbox.maxStringBytes) bytes") }
            }
            return .string(try Sandbox.string(json.serialized(indent: indent, itemSeparator: item, keySeparator: key, sortKeys: sortKeys), "tojson"))
        case "selectattr", "rejectattr":
            guard let at = a.get(0, "attribute") else { throw EvalError("\(name) needs an attribute name") }
            let test = a.positional.count > 1 ? a.positional[1].str : nil
            let rest = Array(a.positional.dropFirst(2))
            return .array(try iterable(v).filter { x in
                let val = attr(x, at.str)
                let ok = try test.map { try Tests.apply($0, val, rest) } ?? val.truthy
                return name == "selectattr" ? ok : !ok
            })
        case "select", "reject":
            let test = a.positional.first?.str
            let rest = Array(a.positional.dropFirst())
            return .array(try iterable(v).filter { x in
                let ok = try test.map { try Tests.apply($0, x, rest) } ?? x.truthy
                return name == "select" ? ok : !ok
            })
        case "map":
            let items = try iterable(v)
            if let at = a.keywords.last(where: { $0.0 == "attribute" })?.1 {
                let dflt = a.keywords.last { $0.0 == "default" }?.1
                return .array(items.map { x in
                    let r = attr(x, at.str)
                    if r.isUndefined, let dflt { return dflt }
                    return r
                })
            }
            guard let f = a.positional.first else { throw EvalError("map needs a filter name or attribute=") }
            let rest = Arguments(Array(a.positional.dropFirst()), a.keywords)
            return .array(try items.map { try apply(f.str, $0, rest, context: context) })
        case "batch":
            guard let n = a.get(0, "linecount")?.intValue, n > 0 else { throw EvalError("batch needs a positive count") }
            let items = try iterable(v)
            return .array(stride(from: 0, to: items.count, by: n).map { .array(Array(items[$0..<min($0 + n, items.count)])) })
        case "center":
            let width = try Sandbox.width(a.get(0, "width")?.intValue ?? 80, "center width")
            let s = string(v)
            let pad = max(0, width - s.unicodeScalars.count)
            let left = pad / 2 + (pad & width & 1)
            return .string(String(repeating: " ", count: left) + s + String(repeating: " ", count: pad - left))
        default:
            throw EvalError("no filter named '\(name)'")
        }
    }
}

/// jinja2's built-in tests (`x is defined`, `x is string`, ...).
enum Tests {
    static func apply(_ name: String, _ v: Value, _ args: [Value]) throws -> Bool {
        func arg() throws -> Value {
            guard let a = args.first else { throw EvalError("test '\(name)' needs an argument") }
            return a
        }
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "none": if case .none = v { return true }; return false
        case "string": if case .string = v { return true }; return false
        case "number": return v.isNumber
        case "integer": if case .int = v { return true }; return false
        case "float": if case .double = v { return true }; return false
        case "boolean": if case .bool = v { return true }; return false
        case "true": if case .bool(true) = v { return true }; return false
        case "false": if case .bool(false) = v { return true }; return false
        case "mapping": if case .dict = v { return true }; return false
        case "iterable": return v.iterated != nil
        case "sequence":
            switch v { case .string, .array, .dict, .undefined: return true; default: return false }
        case "callable":
            switch v { case .macro, .function: return true; default: return false }
        case "sameas":
            let o = try arg()
            switch (v, o) {
            case (.none, .none): return true
            case let (.bool(a), .bool(b)): return a == b
            case let (.namespace(a), .namespace(b)): return a === b
            default: return false
            }
        case "eq", "equalto", "==": return v.equals(try arg())
        case "ne", "!=": return !v.equals(try arg())
        case "lt", "lessthan", "<": return try Operators.compare("<", v, try arg())
        case "le", "<=": return try Operators.compare("<=", v, try arg())
        case "gt", "greaterthan", ">": return try Operators.compare(">", v, try arg())
        case "ge", ">=": return try Operators.compare(">=", v, try arg())
        case "in": return try Operators.contains(try arg(), v)
        case "odd", "even", "divisibleby":
            guard let i = v.intValue else { throw EvalError("test '\(name)' needs an integer") }
            if name == "odd" { return i % 2 != 0 }
            if name == "even" { return i % 2 == 0 }
            guard let d = try arg().intValue, d != 0 else { throw EvalError("divisibleby needs a non-zero integer") }
            return d == -1 || i % d == 0
        case "lower": if case let .string(s) = v { return s.lowercased() == s }; return false
        case "upper": if case let .string(s) = v { return s.uppercased() == s }; return false
        default: throw EvalError("no test named '\(name)'")
        }
    }
}

extension JSONValue {
    /// Values in the document (each a line when indented) and its nesting depth.
    var shape: (lines: Int, depth: Int) {
        switch self {
        case let .array(a):
            var n = 2, d = 0
            for x in a { let (l, e) = x.shape; n += l; d = max(d, e) }
            return (n, d + 1)
        case let .object(pairs):
            var n = 2, d = 0
            for (_, x) in pairs { let (l, e) = x.shape; n += l; d = max(d, e) }
            return (n, d + 1)
        default: return (1, 0)
        }
    }
}
