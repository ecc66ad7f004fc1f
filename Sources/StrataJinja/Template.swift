@_exported import StrataJSON
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A compiled Jinja template: jinja2's language for what chat templates use, configured as
/// transformers configures it (`trim_blocks`, `lstrip_blocks`, loop controls, no autoescape,
/// an immutable sandbox: only namespaces can be assigned into).
///
/// ```swift
/// let t = try Template("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}")
/// let text = try t.render(["messages": Value(json: try JSONValue.parse(#"[{"role": "user", "content": "hi"}]"#))])
/// ```
public final class Template: @unchecked Sendable {
    let nodes: [Node]
    /// Limits against hostile templates (a chat template is model data): macro call depth, output
    /// size, the work of one render (`maxSteps`: a node rendered, an expression evaluated, a loop
    /// iteration, an item a filter or an operator walks, a node of a value checked on assignment),
    /// nesting of a value kept in a variable, and evaluation frames (the parser bounds the nesting
    /// of the source: `Parser.maxNesting`). Each is an error naming the limit, never a trap.
    public var maxDepth = 200
    public var maxOutputBytes = Sandbox.maxStringBytes
    public var maxSteps = 1_000_000
    public var maxValueDepth = 600
    /// Stack given to a render (its own thread): the recursion the limits allow fits in it with
    /// room to spare, whatever thread calls `render` (an event loop's, a cooperative pool's).
    static let renderStackBytes = 64 << 20

    /// Compiles `source`; a syntax error throws `JinjaError.syntax` with the line and column.
    public init(_ source: String) throws {
        var lexer = Lexer(source)
        var parser = Parser(tokens: try lexer.tokenize())
        nodes = try parser.parseTemplate()
    }

    /// Renders with `context` as the template's variables (beside the built-in functions), on a
    /// thread of its own with a stack of `renderStackBytes`.
    public func render(_ context: [String: Value]) throws -> String {
        final class Outcome: @unchecked Sendable { var result: Result<String, Error> = .success("") }
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) let ctx = context
        let thread = Thread { [self] in
            outcome.result = Result { try self.renderHere(ctx) }
            done.signal()
        }
        thread.stackSize = Template.renderStackBytes
        thread.start()
        done.wait()
        return try outcome.result.get()
    }

    func renderHere(_ context: [String: Value]) throws -> String {
        let root = Frame(parent: nil)
        for (k, v) in Template.globals { root.vars[k] = v }
        for (k, v) in context { root.vars[k] = v }
        var ctx = Context(template: self, root: root)
        var out = ""
        do {
            try ctx.render(nodes, frame: root, into: &out)
        } catch is LoopSignal {
            throw JinjaError.syntax(message: "'break' or 'continue' outside a loop", line: 0, column: 0)
        }
        return out
    }

    /// The functions every template sees (transformers adds `raise_exception` and `strftime_now`).
    nonisolated(unsafe) static let globals: [String: Value] = [
        "range": .function(Value.Builtin(name: "range") { args, _ in
            let n = try args.map { v -> Int in guard let i = v.intValue else { throw EvalError("range() takes integers") }; return i }
            let (start, stop, step): (Int, Int, Int)
            switch n.count {
            case 1: (start, stop, step) = (0, n[0], 1)
            case 2: (start, stop, step) = (n[0], n[1], 1)
            case 3: (start, stop, step) = (n[0], n[1], n[2])
            default: throw EvalError("range() takes 1 to 3 arguments")
            }
            if step == 0 { throw EvalError("range() step must not be zero") }
            // the span and the step as magnitudes (UInt: exact for any two Ints), so no bound overflows
            let (lo, hi) = step > 0 ? (start, stop) : (stop, start)
            let span = hi > lo ? UInt(bitPattern: hi &- lo) : 0
            let stride = step.magnitude
            let count = span / stride + (span % stride == 0 ? 0 : 1)
            if count > UInt(Sandbox.maxRange) { throw EvalError("range() too big (\(count) items; at most \(Sandbox.maxRange))") }
            return .array((0..<Int(count)).map { .int(start &+ $0 &* step) })
        }),
        "namespace": .function(Value.Builtin(name: "namespace") { args, kwargs in
            var d = Value.Dict()
            for a in args { if case let .dict(x) = a { for (k, v) in x.pairs { d[k] = v } } }
            for (k, v) in kwargs { d[k] = v }
            return .namespace(Value.Namespace(d))
        }),
        "dict": .function(Value.Builtin(name: "dict") { args, kwargs in
            var d = Value.Dict()
            for a in args { if case let .dict(x) = a { for (k, v) in x.pairs { d[k] = v } } }
            for (k, v) in kwargs { d[k] = v }
            return .dict(d)
        }),
        "raise_exception": .function(Value.Builtin(name: "raise_exception") { args, _ in
            throw JinjaError.raised(message: args.first?.str ?? "raise_exception called")
        }),
        "strftime_now": .function(Value.Builtin(name: "strftime_now") { args, _ in
            guard case let .string(format)? = args.first else { throw EvalError("strftime_now() takes a format string") }
            return .string(Template.strftimeNow(format))
        }),
    ]

    /// `strftime(format)` of now, or of the day `STRATA_DATE=YYYY-MM-DD` names (reproducible renders).
    static func strftimeNow(_ format: String) -> String {
        var t = time(nil)
        var tmv = tm()
        if let fixed = ProcessInfo.processInfo.environment["STRATA_DATE"] {
            let parts = fixed.split(separator: "-").compactMap { Int32($0) }
            if parts.count == 3 {
                tmv.tm_year = parts[0] - 1900; tmv.tm_mon = parts[1] - 1; tmv.tm_mday = parts[2]
                tmv.tm_hour = 0; tmv.tm_min = 0; tmv.tm_sec = 0; tmv.tm_isdst = 0
                t = timegm(&tmv)
            }
            gmtime_r(&t, &tmv)
        } else {
            localtime_r(&t, &tmv)
        }
        var buf = [CChar](repeating: 0, count: 512)
        let n = strftime(&buf, buf.count, format, &tmv)
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Variables of one scope: the template's top level, a loop iteration, a macro call.
final class Frame {
    var vars: [String: Value] = [:]
    let parent: Frame?
    init(parent: Frame?) { self.parent = parent }
    func lookup(_ n: String) -> Value? {
        var f: Frame? = self
        while let x = f { if let v = x.vars[n] { return v }; f = x.parent }
        return nil
    }
}

struct Context {
    let template: Template
    let root: Frame
    var depth = 0
    var line = 0

    /// work done so far (see `Template.maxSteps`)
    var steps = 0
    /// evaluation and rendering calls on the stack now
    var frames = 0
    static let maxFrames = 3000

    init(template: Template, root: Frame) { self.template = template; self.root = root }

    func fail(_ m: String) -> JinjaError { .runtime(message: m, line: line) }

    /// Counts `n` steps of work against the render's budget.
    @inline(__always)
    mutating func charge(_ n: Int = 1) throws {
        steps += n
        if steps > template.maxSteps { throw EvalError("the template did more than \(template.maxSteps) steps of work (the render's budget)") }
    }

    mutating func enter() throws {
        frames += 1
        if frames > Context.maxFrames { throw EvalError("evaluation nested deeper than \(Context.maxFrames) frames") }
    }

    /// A value about to be kept in a variable: nested at most `maxValueDepth` deep (what prints,
    /// compares and frees it recurses that deep); each node walked is a step of work.
    mutating func checkKept(_ v: Value) throws {
        var stack: [(Value, Int)] = [(v, 1)]
        while let (x, d) = stack.popLast() {
            switch x {
            case let .array(a):
                try charge(a.count)
                if d > template.maxValueDepth { throw EvalError("a value nested deeper than \(template.maxValueDepth) levels") }
                for y in a { if y.isContainer { stack.append((y, d + 1)) } }
            case let .dict(dd):
                try charge(dd.count)
                if d > template.maxValueDepth { throw EvalError("a value nested deeper than \(template.maxValueDepth) levels") }
                for (_, y) in dd.pairs { if y.isContainer { stack.append((y, d + 1)) } }
            default: break
            }
        }
    }

    // MARK: statements

    mutating func render(_ nodes: [Node], frame: Frame, into out: inout String) throws {
        for n in nodes {
            try render(n, frame: frame, into: &out)
            if out.utf8.count > template.maxOutputBytes { throw fail("output larger than \(template.maxOutputBytes) bytes") }
        }
    }

    mutating func render(_ node: Node, frame: Frame, into out: inout String) throws {
        do {
            try charge()
            try enter()
        } catch let err as EvalError { throw fail(err.message) }
        defer { frames -= 1 }
        switch node {
        case let .text(s): out += s
        case let .output(e, l):
            line = l
            out += try eval(e, frame).str
        case let .conditional(branches, otherwise):
            for (cond, body) in branches where try eval(cond, frame).truthy {
                try render(body, frame: frame, into: &out)
                return
            }
            try render(otherwise, frame: frame, into: &out)
        case let .loop(targets, iterable, condition, body, otherwise, usesLoop, l):
            line = l
            let source = try eval(iterable, frame)
            if case let .string(text) = source {
                do { try charge(text.utf8.count) } catch let err as EvalError { throw fail(err.message) }
            }
            guard var items = source.iterated else { throw fail("'\(source.typeName)' object is not iterable") }
            if let condition {
                let f = Frame(parent: frame)
                items = try items.filter { item in
                    try bind(targets, item, in: f)
                    return try eval(condition, f).truthy
                }
            }
            if items.isEmpty { try render(otherwise, frame: frame, into: &out); return }
            let n = items.count
            for (i, item) in items.enumerated() {
                do { try charge() } catch let err as EvalError { throw fail(err.message) }
                let f = Frame(parent: frame)
                try bind(targets, item, in: f)
                if usesLoop {
                    var loop = Value.Dict()
                    loop["index0"] = .int(i); loop["index"] = .int(i + 1)
                    loop["revindex0"] = .int(n - 1 - i); loop["revindex"] = .int(n - i)
                    loop["first"] = .bool(i == 0); loop["last"] = .bool(i == n - 1)
                    loop["length"] = .int(n); loop["depth"] = .int(1); loop["depth0"] = .int(0)
                    loop["previtem"] = i > 0 ? items[i - 1] : .undefined("previtem")
                    loop["nextitem"] = i < n - 1 ? items[i + 1] : .undefined("nextitem")
                    loop["cycle"] = .function(Value.Builtin(name: "cycle") { args, _ in
                        args.isEmpty ? .undefined("cycle") : args[i % args.count]
                    })
                    f.vars["loop"] = .dict(loop)
                }
                do {
                    try render(body, frame: f, into: &out)
                } catch LoopSignal.breakLoop {
                    break
                } catch LoopSignal.continueLoop {
                    continue
                }
            }
        case let .set(target, e, l):
            line = l
            let v = try eval(e, frame)
            do { try checkKept(v) } catch let err as EvalError { throw fail(err.message) }
            switch target {
            case let .name(n): frame.vars[n] = v
            case let .names(ns): try bind(ns, v, in: frame)
            case let .attribute(n, attr):
                guard case let .namespace(ns)? = frame.lookup(n) else { throw fail("cannot assign attribute '\(attr)' of '\(n)': not a namespace") }
                ns.values[attr] = v
            }
        case let .setBlock(n, filters, body, l):
            var s = ""
            try render(body, frame: frame, into: &s)
            line = l
            var v = Value.string(s)
            for (f, args, kwargs) in filters {
                v = try applyFilter(f, v, try args.map { try eval($0, frame) }, try kwargs.map { ($0.0, try eval($0.1, frame)) })
            }
            frame.vars[n] = v
        case let .macro(m):
            frame.vars[m.name] = .macro(m)
        case let .filterBlock(f, args, kwargs, body, l):
            var s = ""
            try render(body, frame: frame, into: &s)
            line = l
            out += try applyFilter(f, .string(s), try args.map { try eval($0, frame) }, try kwargs.map { ($0.0, try eval($0.1, frame)) }).str
        case let .with(assigns, body):
            let f = Frame(parent: frame)
            for (n, e) in assigns {
                let v = try eval(e, frame)
                do { try checkKept(v) } catch let err as EvalError { throw fail(err.message) }
                f.vars[n] = v
            }
            try render(body, frame: f, into: &out)
        case .breakLoop: throw LoopSignal.breakLoop
        case .continueLoop: throw LoopSignal.continueLoop
        }
    }

    func bind(_ targets: [String], _ v: Value, in f: Frame) throws {
        if targets.count == 1 { f.vars[targets[0]] = v; return }
        guard let items = v.iterated, items.count == targets.count else {
            throw fail("cannot unpack \(v.typeName) into \(targets.count) names")
        }
        for (t, x) in zip(targets, items) { f.vars[t] = x }
    }

    // MARK: expressions

    mutating func eval(_ e: Expr, _ f: Frame) throws -> Value {
        do {
            return try evalInner(e, f)
        } catch let err as EvalError {
            throw fail(err.message)
        }
    }

    mutating func evalInner(_ e: Expr, _ f: Frame) throws -> Value {
        try charge()
        try enter()
        defer { frames -= 1 }
        switch e {
        case let .literal(v): return v
        case let .name(n): return f.lookup(n) ?? .undefined(n)
        case let .list(items): return .array(try items.map { try evalInner($0, f) })
        case let .tuple(items): return .array(try items.map { try evalInner($0, f) })
        case let .dict(pairs):
            var d = Value.Dict()
            for (k, v) in pairs {
                let key = try evalInner(k, f)
                guard case let .string(s) = key else { throw EvalError("dict keys must be strings here, got \(key.typeName)") }
                d[s] = try evalInner(v, f)
            }
            return .dict(d)
        case let .attribute(base, name):
            return try attribute(try evalInner(base, f), name)
        case let .item(base, index):
            return try item(try evalInner(base, f), try evalInner(index, f))
        case let .slice(base, a, b, c):
            let v = try evalInner(base, f)
            let start = try a.map { try evalInner($0, f) }, stop = try b.map { try evalInner($0, f) }, step = try c.map { try evalInner($0, f) }
            return try slice(v, start, stop, step)
        case let .call(callee, args, kwargs, l):
            line = l
            let a = try args.map { try evalInner($0, f) }
            let k = try kwargs.map { ($0.0, try evalInner($0.1, f)) }
            try charge(a.reduce(0) { $0 + $1.workSize })
            let result: Value
            if case let .attribute(objExpr, name) = callee {
                let obj = try evalInner(objExpr, f)
                try charge(obj.workSize)
                if let r = try Methods.call(obj, name, a, k) { result = r } else { result = try call(try attribute(obj, name), a, k, what: name) }
            } else {
                let target = try evalInner(callee, f)
                var what = "value"
                if case let .name(n) = callee { what = n }
                result = try call(target, a, k, what: what)
            }
            try charge(result.workSize)
            return result
        case let .filter(base, name, args, kwargs, l):
            line = l
            let v = try evalInner(base, f)
            try charge(v.workSize)
            let result = try applyFilter(name, v, try args.map { try evalInner($0, f) }, try kwargs.map { ($0.0, try evalInner($0.1, f)) })
            try charge(result.workSize)
            return result
        case let .test(base, name, args, l):
            line = l
            return .bool(try applyTest(name, try evalInner(base, f), try args.map { try evalInner($0, f) }))
        case let .not(x): return .bool(!(try evalInner(x, f).truthy))
        case let .negate(x):
            switch try evalInner(x, f) {
            case let .int(i): return .int(try Sandbox.checked(0.subtractingReportingOverflow(i), "-(\(i))"))
            case let .double(d): return .double(-d)
            case let .bool(b): return .int(b ? -1 : 0)
            case let v: throw EvalError("bad operand type for unary -: '\(v.typeName)'")
            }
        case let .and(a, b):
            let x = try evalInner(a, f)
            return x.truthy ? try evalInner(b, f) : x
        case let .or(a, b):
            let x = try evalInner(a, f)
            return x.truthy ? x : try evalInner(b, f)
        case let .binary(op, a, b, l):
            line = l
            let x = try evalInner(a, f), y = try evalInner(b, f)
            try charge(x.workSize + y.workSize)
            return try Operators.binary(op, x, y)
        case let .compare(first, ops):
            var left = try evalInner(first, f)
            for (op, rhs) in ops {
                let right = try evalInner(rhs, f)
                try charge(op == "in" || op == "not in" ? right.workSize : 1)
                if !(try Operators.compare(op, left, right)) { return .bool(false) }
                left = right
            }
            return .bool(true)
        case let .concat(items):
            return .string(try Sandbox.string(try items.map { try evalInner($0, f).str }.joined(), "'~'"))
        case let .conditional(cond, yes, no):
            if try evalInner(cond, f).truthy { return try evalInner(yes, f) }
            return try no.map { try evalInner($0, f) } ?? .undefined("conditional")
        }
    }

    func attribute(_ v: Value, _ name: String) throws -> Value {
        switch v {
        case let .undefined(n): throw EvalError("'\(n)' is undefined (reading its attribute '\(name)')")
        case let .dict(d): return d[name] ?? .undefined(name)
        case let .namespace(ns): return ns.values[name] ?? .undefined(name)
        default: return .undefined(name)
        }
    }

    func item(_ v: Value, _ index: Value) throws -> Value {
        switch (v, index) {
        case let (.undefined(n), _): throw EvalError("'\(n)' is undefined (reading an item)")
        case let (.array(a), _):
            guard let i = index.intValue else { return .undefined("item") }
            let j = i < 0 ? a.count + i : i
            return j >= 0 && j < a.count ? a[j] : .undefined("item \(i)")
        case let (.string(s), _):
            guard let i = index.intValue else { return .undefined("item") }
            let u = Array(s.unicodeScalars)
            let j = i < 0 ? u.count + i : i
            return j >= 0 && j < u.count ? .string(String(u[j])) : .undefined("item \(i)")
        case let (.dict(d), .string(k)): return d[k] ?? .undefined(k)
        case let (.namespace(ns), .string(k)): return ns.values[k] ?? .undefined(k)
        default: return .undefined("item")
        }
    }

    func slice(_ v: Value, _ a: Value?, _ b: Value?, _ c: Value?) throws -> Value {
        func opt(_ x: Value?) throws -> Int? {
            guard let x, !(x.isNoneLike) else { return nil }
            guard let i = x.intValue else { throw EvalError("slice indices must be integers or None") }
            return i
        }
        let step = try opt(c) ?? 1
        if step == 0 { throw EvalError("slice step cannot be zero") }
        func indices(_ n: Int) throws -> [Int] {
            func clamp(_ x: Int?, _ dflt: Int, lo: Int, hi: Int) -> Int {
                guard var x else { return dflt }
                if x < 0 { x += n }
                return min(max(x, lo), hi)
            }
            if step > 0 {
                let s = clamp(try opt(a), 0, lo: 0, hi: n), e = clamp(try opt(b), n, lo: 0, hi: n)
                return s < e ? Array(stride(from: s, to: e, by: step)) : []
            }
            let s = clamp(try opt(a), n - 1, lo: -1, hi: n - 1), e = clamp(try opt(b), -1, lo: -1, hi: n - 1)
            return s > e ? Array(stride(from: s, to: e, by: step)) : []
        }
        switch v {
        case let .array(x): return .array(try indices(x.count).map { x[$0] })
        case let .string(s):
            let u = Array(s.unicodeScalars)
            var out = String.UnicodeScalarView()
            for i in try indices(u.count) { out.append(u[i]) }
            return .string(String(out))
        case let .undefined(n): throw EvalError("'\(n)' is undefined (slicing it)")
        default: throw EvalError("'\(v.typeName)' object is not subscriptable")
        }
    }

    mutating func call(_ target: Value, _ args: [Value], _ kwargs: [(String, Value)], what: String) throws -> Value {
        switch target {
        case let .function(fn): return try fn.call(args, kwargs)
        case let .macro(m):
            guard depth < template.maxDepth else { throw EvalError("macro calls nested deeper than \(template.maxDepth)") }
            let f = Frame(parent: root)
            if args.count > m.parameters.count { throw EvalError("macro '\(m.name)' takes \(m.parameters.count) arguments, got \(args.count)") }
            for (i, (p, dflt)) in m.parameters.enumerated() {
                if i < args.count { f.vars[p] = args[i] }
                else if let kw = kwargs.last(where: { $0.0 == p }) { f.vars[p] = kw.1 }
                else if let dflt { f.vars[p] = try eval(dflt, f) }
                else { f.vars[p] = .undefined(p) }
                if let v = f.vars[p] { try checkKept(v) }
            }
            var out = ""
            depth += 1
            defer { depth -= 1 }
            let saved = line
            try render(m.body, frame: f, into: &out)
            line = saved
            return .string(out)
        case .undefined: throw EvalError("'\(what)' is undefined")
        default: throw EvalError("'\(target.typeName)' object is not callable")
        }
    }

    func applyFilter(_ name: String, _ v: Value, _ args: [Value], _ kwargs: [(String, Value)]) throws -> Value {
        try Filters.apply(name, v, Arguments(args, kwargs), context: self)
    }

    func applyTest(_ name: String, _ v: Value, _ args: [Value]) throws -> Bool {
        try Tests.apply(name, v, args)
    }
}

extension Value {
    var isContainer: Bool {
        switch self { case .array, .dict: return true; default: return false }
    }

    /// What an operator or filter over this value walks, in steps: its items, or a string's
    /// bytes by the 64.
    var workSize: Int {
        switch self {
        case let .array(a): return a.count
        case let .dict(d): return d.count
        case let .string(s): return s.utf8.count >> 6
        default: return 0
        }
    }

    var isNoneLike: Bool {
        switch self { case .none, .undefined: return true; default: return false }
    }
}

/// A filter's or method's arguments: positional, then by keyword.
struct Arguments {
    let positional: [Value]
    let keywords: [(String, Value)]
    init(_ p: [Value], _ k: [(String, Value)]) { positional = p; keywords = k }
    /// The argument at `index` or named `name`.
    func get(_ index: Int, _ name: String) -> Value? {
        if index < positional.count { return positional[index] }
        return keywords.last { $0.0 == name }?.1
    }
}
