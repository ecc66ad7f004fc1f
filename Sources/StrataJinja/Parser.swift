/// Expressions of the template language.
indirect enum Expr {
    case literal(Value)
    case name(String)
    case list([Expr])
    case tuple([Expr])
    case dict([(Expr, Expr)])
    case attribute(Expr, String)
    case item(Expr, Expr)
    case slice(Expr, Expr?, Expr?, Expr?)
    case call(Expr, [Expr], [(String, Expr)], line: Int)
    case filter(Expr, String, [Expr], [(String, Expr)], line: Int)
    case test(Expr, String, [Expr], line: Int)
    case not(Expr)
    case negate(Expr)
    case and(Expr, Expr)
    case or(Expr, Expr)
    case binary(String, Expr, Expr, line: Int)
    case compare(Expr, [(String, Expr)])
    case concat([Expr])
    case conditional(Expr, Expr, Expr?)
}

/// Where `set` assigns: a name, a namespace attribute, or several names from a sequence.
enum SetTarget {
    case name(String)
    case attribute(String, String)
    case names([String])
}

/// Statements of the template language.
indirect enum Node {
    case text(String)
    case output(Expr, line: Int)
    case conditional([(Expr, [Node])], otherwise: [Node])
    /// `usesLoop`: whether the body names `loop` (else no `loop` object is made per iteration)
    case loop(targets: [String], iterable: Expr, condition: Expr?, body: [Node], otherwise: [Node], usesLoop: Bool, line: Int)
    case set(SetTarget, Expr, line: Int)
    case setBlock(String, filters: [(String, [Expr], [(String, Expr)])], body: [Node], line: Int)
    case macro(Macro)
    case filterBlock(String, [Expr], [(String, Expr)], body: [Node], line: Int)
    case with([(String, Expr)], body: [Node])
    case breakLoop
    case continueLoop
}

/// A `{% macro %}`: its parameters (with default expressions) and body.
public final class Macro {
    let name: String
    let parameters: [(String, Expr?)]
    let body: [Node]
    init(name: String, parameters: [(String, Expr?)], body: [Node]) { self.name = name; self.parameters = parameters; self.body = body }
}

/// Recursive descent over the lexer's tokens, following jinja2's grammar and precedence:
/// conditional < or < and < not < comparison < + - < ~ < * / // % < ** < unary < filters/tests <
/// postfix (attribute, subscript, call).
struct Parser {
    var tokens: [Token]
    var i = 0
    /// How deep the construct being parsed sits: blocks inside blocks, brackets and
    /// sub-expressions inside each other, and each link of a chain (`a + b + c`, `x|f|g`, `a.b.c`),
    /// which nests the tree one level more. Bounded so that the tree, its evaluation and its
    /// release recurse a bounded depth (jinja2 relies on Python's recursion limit).
    var nesting = 0
    static let maxNesting = 250
    /// times the name `loop` was parsed (a for loop whose body names it makes its `loop` object)
    var loopMentions = 0

    init(tokens: [Token]) { self.tokens = tokens }

    var current: Token { tokens[i] }

    /// One level deeper; the caller restores `nesting` when it returns.
    mutating func deeper() throws {
        nesting += 1
        if nesting > Parser.maxNesting { throw error("nested deeper than \(Parser.maxNesting) levels (blocks, brackets and chained operators)") }
    }
    func peekKind(_ k: Int = 1) -> TokenKind { i + k < tokens.count ? tokens[i + k].kind : .eof }

    func error(_ m: String, _ t: Token? = nil) -> JinjaError {
        let t = t ?? current
        return .syntax(message: m, line: t.line, column: t.column)
    }

    mutating func next() -> Token { let t = tokens[i]; if i < tokens.count - 1 { i += 1 }; return t }

    func isName(_ n: String) -> Bool { if case let .name(x) = current.kind { return x == n }; return false }
    func isOp(_ o: String) -> Bool { if case let .op(x) = current.kind { return x == o }; return false }

    mutating func skipName(_ n: String) -> Bool { if isName(n) { i += 1; return true }; return false }
    mutating func skipOp(_ o: String) -> Bool { if isOp(o) { i += 1; return true }; return false }

    mutating func expectOp(_ o: String) throws {
        guard skipOp(o) else { throw error("expected '\(o)', got \(describe(current.kind))") }
    }

    mutating func expectName() throws -> String {
        guard case let .name(n) = current.kind else { throw error("expected a name, got \(describe(current.kind))") }
        i += 1
        return n
    }

    mutating func expectBlockEnd() throws {
        guard current.kind == .blockEnd else { throw error("expected '%}', got \(describe(current.kind))") }
        i += 1
    }

    func describe(_ k: TokenKind) -> String {
        switch k {
        case let .data(s): return "text \(s.prefix(20).debugDescription)"
        case .variableBegin: return "'{{'"
        case .variableEnd: return "'}}'"
        case .blockBegin: return "'{%'"
        case .blockEnd: return "'%}'"
        case let .name(n): return "'\(n)'"
        case let .string(s): return "string \(s.prefix(20).debugDescription)"
        case let .int(v): return "\(v)"
        case let .float(v): return "\(v)"
        case let .op(o): return "'\(o)'"
        case .eof: return "end of template"
        }
    }

    // MARK: statements

    /// The whole template.
    mutating func parseTemplate() throws -> [Node] {
        let (body, end) = try parseBody(until: [])
        if let end { throw error("unexpected '\(end)'", tokens[i - 1]) }
        return body
    }

    /// Nodes up to one of the block tags in `until` (whose name is consumed and returned, the
    /// rest of that tag left to the caller), or the end of the template when `until` is empty.
    mutating func parseBody(until: Set<String>) throws -> ([Node], String?) {
        let saved = nesting
        defer { nesting = saved }
        try deeper()
        var nodes: [Node] = []
        while true {
            let t = current
            switch t.kind {
            case .eof:
                if until.isEmpty { return (nodes, nil) }
                throw error("unexpected end of template, expected one of: \(until.sorted().joined(separator: ", "))")
            case let .data(s):
                i += 1
                nodes.append(.text(s))
            case .variableBegin:
                i += 1
                let e = try parseTuple()
                guard current.kind == .variableEnd else { throw error("expected '}}', got \(describe(current.kind))") }
                i += 1
                nodes.append(.output(e, line: t.line))
            case .blockBegin:
                i += 1
                let nameToken = current
                let name = try expectName()
                if until.contains(name) { return (nodes, name) }
                nodes.append(try parseStatement(name, nameToken))
            default:
                throw error("unexpected \(describe(t.kind))")
            }
        }
    }

    mutating func parseStatement(_ name: String, _ tok: Token) throws -> Node {
        switch name {
        case "if":
            var branches: [(Expr, [Node])] = []
            var cond = try parseExpression()
            try expectBlockEnd()
            while true {
                let (body, end) = try parseBody(until: ["elif", "else", "endif"])
                branches.append((cond, body))
                if end == "elif" {
                    cond = try parseExpression()
                    try expectBlockEnd()
                    continue
                }
                var otherwise: [Node] = []
                if end == "else" {
                    try expectBlockEnd()
                    (otherwise, _) = try parseBody(until: ["endif"])
                }
                try expectBlockEnd()
                return .conditional(branches, otherwise: otherwise)
            }
        case "for":
            var targets = [try expectName()]
            while skipOp(",") { targets.append(try expectName()) }
            guard skipName("in") else { throw error("expected 'in' in a for loop, got \(describe(current.kind))") }
            let iterable = try parseTuple(conditional: false)
            let condition = skipName("if") ? try parseExpression() : nil
            _ = skipName("recursive")
            try expectBlockEnd()
            let mentions = loopMentions
            let (body, end) = try parseBody(until: ["else", "endfor"])
            let usesLoop = loopMentions > mentions
            var otherwise: [Node] = []
            if end == "else" {
                try expectBlockEnd()
                (otherwise, _) = try parseBody(until: ["endfor"])
            }
            try expectBlockEnd()
            return .loop(targets: targets, iterable: iterable, condition: condition, body: body, otherwise: otherwise, usesLoop: usesLoop, line: tok.line)
        case "set":
            let first = try expectName()
            var target = SetTarget.name(first)
            if skipOp(".") {
                target = .attribute(first, try expectName())
            } else if isOp(",") {
                var names = [first]
                while skipOp(",") { names.append(try expectName()) }
                target = .names(names)
            }
            if skipOp("=") {
                let e = try parseTuple()
                try expectBlockEnd()
                return .set(target, e, line: tok.line)
            }
            guard case let .name(n) = target else { throw error("expected '='") }
            var filters: [(String, [Expr], [(String, Expr)])] = []
            while skipOp("|") {
                let f = try expectName()
                var args: [Expr] = [], kwargs: [(String, Expr)] = []
                if isOp("(") { (args, kwargs) = try parseCallArguments() }
                filters.append((f, args, kwargs))
            }
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endset"])
            try expectBlockEnd()
            return .setBlock(n, filters: filters, body: body, line: tok.line)
        case "macro":
            let n = try expectName()
            try expectOp("(")
            var params: [(String, Expr?)] = []
            while !isOp(")") {
                if !params.isEmpty { try expectOp(",") }
                if isOp(")") { break }
                let p = try expectName()
                params.append((p, skipOp("=") ? try parseExpression() : nil))
            }
            try expectOp(")")
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endmacro"])
            if case .name = current.kind { i += 1 }   // {% endmacro name %}
            try expectBlockEnd()
            return .macro(Macro(name: n, parameters: params, body: body))
        case "filter":
            let f = try expectName()
            var args: [Expr] = [], kwargs: [(String, Expr)] = []
            if isOp("(") { (args, kwargs) = try parseCallArguments() }
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endfilter"])
            try expectBlockEnd()
            return .filterBlock(f, args, kwargs, body: body, line: tok.line)
        case "with":
            var assigns: [(String, Expr)] = []
            while current.kind != .blockEnd {
                if !assigns.isEmpty { try expectOp(",") }
                let n = try expectName()
                try expectOp("=")
                assigns.append((n, try parseExpression()))
            }
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endwith"])
            try expectBlockEnd()
            return .with(assigns, body: body)
        case "generation":
            // transformers' AssistantTracker tag: renders its body unchanged
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endgeneration"])
            try expectBlockEnd()
            return .with([], body: body)
        case "break":
            try expectBlockEnd()
            return .breakLoop
        case "continue":
            try expectBlockEnd()
            return .continueLoop
        default:
            throw error("unknown tag '\(name)'", tok)
        }
    }

    // MARK: expressions

    /// Comma-separated expressions: one without a trailing comma is itself, more a tuple.
    mutating func parseTuple(conditional: Bool = true) throws -> Expr {
        let saved = nesting
        defer { nesting = saved }
        try deeper()
        var items: [Expr] = []
        var sawComma = false
        while true {
            if !items.isEmpty {
                guard skipOp(",") else { break }
                sawComma = true
                if [TokenKind.variableEnd, .blockEnd].contains(current.kind) || isOp(")") || isName("if") && !conditional { break }
            }
            items.append(conditional ? try parseExpression() : try parseOr())
        }
        return items.count == 1 && !sawComma ? items[0] : .tuple(items)
    }

    mutating func parseExpression() throws -> Expr {
        let saved = nesting
        defer { nesting = saved }
        try deeper()
        var e = try parseOr()
        while skipName("if") {
            try deeper()
            let cond = try parseOr()
            let otherwise = skipName("else") ? try parseExpression() : nil
            e = .conditional(cond, e, otherwise)
        }
        return e
    }

    mutating func parseOr() throws -> Expr {
        let saved = nesting
        defer { nesting = saved }
        var e = try parseAnd()
        while skipName("or") { try deeper(); e = .or(e, try parseAnd()) }
        return e
    }

    mutating func parseAnd() throws -> Expr {
        let saved = nesting
        defer { nesting = saved }
        var e = try parseNot()
        while skipName("and") { try deeper(); e = .and(e, try parseNot()) }
        return e
    }

    mutating func parseNot() throws -> Expr {
        let saved = nesting
        defer { nesting = saved }
        try deeper()
        if skipName("not") { return .not(try parseNot()) }
        return try parseCompare()
    }

    mutating func parseCompare() throws -> Expr {
        let first = try parseMath1()
        var ops: [(String, Expr)] = []
        while true {
            if case let .op(o) = current.kind, ["==", "!=", "<", "<=", ">", ">="].contains(o) {
                i += 1
                ops.append((o, try parseMath1()))
            } else if skipName("in") {
                ops.append(("in", try parseMath1()))
            } else if isName("not"), case .name("in") = peekKind() {
                i += 2
                ops.append(("not in", try parseMath1()))
            } else { break }
        }
        return ops.isEmpty ? first : .compare(first, ops)
    }

    mutating func parseMath1() throws -> Expr {
        let saved = nesting
        defer { nesting = saved }
        var e = try parseConcat()
        while case let .op(o) = current.kind, o == "+" || o == "-" {
            try deeper()
            let line = next().line
            e = .binary(o, e, try parseConcat(), line: line)
        }
        return e
    }

    mutating func parseConcat() throws -> Expr {
        var items = [try parseMath2()]
        while skipOp("~") { items.append(try parseMath2()) }
        return items.count == 1 ? items[0] : .concat(items)
    }

    mutating func parseMath2() throws -> Expr {
        let saved = nesting
        defer { nesting = saved }
        var e = try parsePow()
        while case let .op(o) = current.kind, ["*", "/", "//", "%"].contains(o) {
            try deeper()
            let line = next().line
            e = .binary(o, e, try parsePow(), line: line)
        }
        return e
    }

    mutating func parsePow() throws -> Expr {
        let saved = nesting
        defer { nesting = saved }
        var e = try parseUnary()
        while isOp("**") {
            try deeper()
            let line = next().line
            e = .binary("**", e, try parseUnary(), line: line)
        }
        return e
    }

    mutating func parseUnary(withFilter: Bool = true) throws -> Expr {
        let saved = nesting
        defer { nesting = saved }
        try deeper()
        var e: Expr
        if skipOp("-") {
            e = .negate(try parseUnary(withFilter: false))
        } else if skipOp("+") {
            e = try parseUnary(withFilter: false)
        } else {
            e = try parsePostfix(try parsePrimary())
        }
        return withFilter ? try parseFilterExpression(e) : e
    }

    mutating func parsePrimary() throws -> Expr {
        let t = current
        switch t.kind {
        case let .name(n):
            i += 1
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default:
                if n == "loop" { loopMentions += 1 }
                return .name(n)
            }
        case .string:
            var s = ""
            while case let .string(x) = current.kind { s += x; i += 1 }
            return .literal(.string(s))
        case let .int(v): i += 1; return .literal(.int(v))
        case let .float(v): i += 1; return .literal(.double(v))
        case .op("("):
            i += 1
            if skipOp(")") { return .tuple([]) }
            let e = try parseTuple()
            try expectOp(")")
            return e
        case .op("["):
            i += 1
            var items: [Expr] = []
            while !isOp("]") {
                if !items.isEmpty { try expectOp(",") }
                if isOp("]") { break }
                items.append(try parseExpression())
            }
            try expectOp("]")
            return .list(items)
        case .op("{"):
            i += 1
            var pairs: [(Expr, Expr)] = []
            while !isOp("}") {
                if !pairs.isEmpty { try expectOp(",") }
                if isOp("}") { break }
                let k = try parseExpression()
                try expectOp(":")
                pairs.append((k, try parseExpression()))
            }
            try expectOp("}")
            return .dict(pairs)
        default:
            throw error("unexpected \(describe(t.kind))")
        }
    }

    mutating func parsePostfix(_ base: Expr) throws -> Expr {
        let saved = nesting
        defer { nesting = saved }
        var e = base
        while true {
            try deeper()
            if skipOp(".") {
                switch current.kind {
                case let .name(n): i += 1; e = .attribute(e, n)
                case let .int(v): i += 1; e = .item(e, .literal(.int(v)))
                default: throw error("expected an attribute name after '.'")
                }
            } else if isOp("[") {
                i += 1
                e = try parseSubscript(e)
            } else if isOp("(") {
                e = try parseCall(e)
            } else {
                return e
            }
        }
    }

    /// `callee(args)`: the call, with the line of its parenthesis.
    mutating func parseCall(_ callee: Expr) throws -> Expr {
        let line = current.line
        let (args, kwargs) = try parseCallArguments()
        return .call(callee, args, kwargs, line: line)
    }

    mutating func parseSubscript(_ base: Expr) throws -> Expr {
        var parts: [Expr?] = [nil]
        var isSlice = false
        while !isOp("]") {
            if skipOp(":") {
                isSlice = true
                parts.append(nil)
                continue
            }
            guard parts[parts.count - 1] == nil else { throw error("expected ':' or ']'") }
            parts[parts.count - 1] = try parseExpression()
        }
        try expectOp("]")
        if !isSlice {
            guard let index = parts[0] else { throw error("expected an index") }
            return .item(base, index)
        }
        guard parts.count <= 3 else { throw error("a slice takes at most three parts") }
        return .slice(base, parts[0], parts.count > 1 ? parts[1] : nil, parts.count > 2 ? parts[2] : nil)
    }

    mutating func parseCallArguments() throws -> ([Expr], [(String, Expr)]) {
        try expectOp("(")
        var args: [Expr] = []
        var kwargs: [(String, Expr)] = []
        while !isOp(")") {
            if !args.isEmpty || !kwargs.isEmpty { try expectOp(",") }
            if isOp(")") { break }
            if case let .name(n) = current.kind, case .op("=") = peekKind() {
                i += 2
                kwargs.append((n, try parseExpression()))
            } else {
                if !kwargs.isEmpty { throw error("a positional argument after a keyword argument") }
                args.append(try parseExpression())
            }
        }
        try expectOp(")")
        return (args, kwargs)
    }

    mutating func parseFilterExpression(_ base: Expr) throws -> Expr {
        let saved = nesting
        defer { nesting = saved }
        var e = base
        while true {
            try deeper()
            if isOp("|") {
                let line = next().line
                var name = try expectName()
                while skipOp(".") { name += "." + (try expectName()) }
                var args: [Expr] = [], kwargs: [(String, Expr)] = []
                if isOp("(") { (args, kwargs) = try parseCallArguments() }
                e = .filter(e, name, args, kwargs, line: line)
            } else if isName("is") {
                let line = next().line
                let negated = skipName("not")
                let name = try expectName()
                var args: [Expr] = []
                if isOp("(") {
                    (args, _) = try parseCallArguments()
                } else {
                    switch current.kind {
                    case .name("else"), .name("or"), .name("and"): break
                    case .name, .string, .int, .float, .op("("), .op("["), .op("{"):
                        if isName("is") { throw error("cannot chain tests with 'is'") }
                        args = [try parsePostfix(try parsePrimary())]
                    default: break
                    }
                }
                let t = Expr.test(e, name, args, line: line)
                e = negated ? .not(t) : t
            } else if isOp("(") {
                e = try parseCall(e)
            } else {
                return e
            }
        }
    }
}
