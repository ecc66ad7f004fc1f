import Foundation

/// Every token of a vocabulary as the bytes it adds to text, in a trie laid out in preorder
/// (`depth`, `byte`, `skip` per node), so that a walk over all tokens reads shared prefixes once
/// and skips a whole subtree when its prefix is refused. Special tokens are not in it (a grammar
/// never produces them; end-of-sequence is handled apart). Built once per tokenizer.
public final class VocabularyTrie: Sendable {
    public let vocabSize: Int
    /// [nodes] byte on the edge into the node (node 0 is the root)
    let byte: [UInt8]
    /// [nodes] depth (root 0)
    let depth: [Int32]
    /// [nodes] the node after this one's subtree
    let skip: [Int32]
    /// [nodes + 1] where each node's tokens start in `tokens`
    let tokenStart: [Int32]
    /// token ids by node
    let tokens: [Int32]
    /// [vocab] bytes of each token (empty: not matchable)
    public let tokenBytes: [[UInt8]]
    public let maxDepth: Int
    public var nodeCount: Int { byte.count }

    public convenience init(tokenizer: Tokenizer, vocabSize: Int) {
        self.init(tokens: (0..<vocabSize).map { tokenizer.bytes(of: $0) ?? [] })
    }

    /// From each id's bytes (empty: never allowed).
    public init(tokens all: [[UInt8]]) {
        vocabSize = all.count
        tokenBytes = all
        // sort ids by their bytes: preorder is then the sorted order of distinct prefixes
        let order = (0..<all.count).filter { !all[$0].isEmpty }.sorted { all[$0].lexicographicallyPrecedes(all[$1]) }
        var byte: [UInt8] = [0], depth: [Int32] = [0], tokenStart: [Int32] = [0], tokens: [Int32] = []
        var prev: [UInt8] = []
        var maxDepth = 0
        for id in order {
            let b = all[id]
            var common = 0
            while common < b.count && common < prev.count && b[common] == prev[common] { common += 1 }
            for k in common..<b.count {
                byte.append(b[k]); depth.append(Int32(k + 1))
                tokenStart.append(Int32(tokens.count))
            }
            // the token ends at the last node of its path (a later node's tokens start after)
            tokens.append(Int32(id))
            prev = b
            maxDepth = max(maxDepth, b.count)
        }
        tokenStart.append(Int32(tokens.count))
        // tokenStart[n] was set when node n was made, before its tokens were appended: tokens of
        // node n are tokens[tokenStart[n] ..< tokenStart[n + 1]]
        var skip = [Int32](repeating: Int32(byte.count), count: byte.count)
        var open: [Int32] = []
        for n in 0..<byte.count {
            while let last = open.last, depth[Int(last)] >= depth[n] { skip[Int(last)] = Int32(n); open.removeLast() }
            open.append(Int32(n))
        }
        self.byte = byte; self.depth = depth; self.skip = skip; self.tokenStart = tokenStart; self.tokens = tokens
        self.maxDepth = maxDepth
    }
}

/// A grammar over a vocabulary: which tokens may come next in each state of the grammar, and
/// how many bytes each leaves before the grammar can end.
///
/// A state is a set of stacks, as in llama.cpp's grammar sampler: each stack is the path of
/// rule positions that leads to the next byte to match. Stacks are interned as nodes (element
/// position, parent node) and sets of them as states (an `Int32`); each state has a table of 256
/// next states, filled as bytes are met, so the walk over the `VocabularyTrie` that answers for
/// the whole vocabulary (`distances`) costs one array read per trie node. The answer for a state
/// is kept (a state met again costs nothing but the sampler's pass over the logits); at most
/// `cacheLimit` states' answers are kept.
///
/// The distance of a token is the fewest bytes that must follow it before the grammar can end:
/// when a request's remaining tokens run short, only tokens that leave enough room are allowed,
/// so an answer always closes before `max_tokens` when the vocabulary has a token for each byte
/// (byte-level BPE, byte fallback) and the budget is at least the grammar's shortest text.
/// Used from one thread at a time (the engine's), guarded by a lock for the odd other caller.
public final class TokenConstraint: @unchecked Sendable {
    public let grammar: Grammar
    public let vocabulary: VocabularyTrie
    /// tokens that end the sequence: allowed only where the grammar may end
    public let eos: Set<Int>
    /// What the constraint enforces, for messages ("json_schema", "grammar", ...).
    public let kind: String

    /// Distance marking a token that is not allowed.
    public static let refused: UInt16 = .max
    /// The accepting node (the root rule finished).
    static let acceptNode: Int32 = 0
    /// The state after an end-of-sequence token: nothing more.
    public static let ended: Int32 = 0
    static let unknown: Int32 = -2, dead: Int32 = -1

    private let lock = NSLock()
    /// [nodes] element position (-1 for the accepting node 0) and parent node (-1: none)
    private var nodePos: [Int32] = [-1]
    private var nodeParent: [Int32] = [-1]
    private var nodeIDs: [Int64: Int32] = [:]
    /// [nodes] fewest bytes to the end of the grammar from the node (-1: not computed)
    private var nodeDist: [Int32] = [0]
    /// [states] the nodes of each state, sorted; state 0 is the empty set (`ended`)
    private var states: [[Int32]] = [[]]
    private var stateIDs: [[Int32]: Int32] = [[]: 0]
    /// [states * 256] next state per byte (`unknown`, `dead`)
    private var next: [Int32] = [Int32](repeating: -1, count: 256)
    /// [states] fewest bytes to the end; whether the grammar may end there
    private var stateDist: [Int32] = [0]
    private var stateAccepts: [Bool] = [false]
    private var cache: [Int32: [UInt16]] = [:]
    private var cacheOrder: [Int32] = []
    public let cacheLimit: Int
    /// States whose distances were computed (cache misses) and served from the cache.
    public private(set) var walks = 0
    public private(set) var hits = 0
    /// The start state.
    public private(set) var initial: Int32 = 0

    public init(grammar: Grammar, vocabulary: VocabularyTrie, eos: Set<Int>, kind: String = "grammar", cacheLimit: Int = 64) {
        self.grammar = grammar; self.vocabulary = vocabulary; self.eos = eos; self.kind = kind; self.cacheLimit = cacheLimit
        var s: [Int32] = []
        for a in grammar.alternatives[Int(grammar.root)] { settle(a, parent: -1, into: &s, depth: 0) }
        initial = state(s)
    }

    private func intern(_ pos: Int32, _ parent: Int32) -> Int32 {
        let key = Int64(pos) << 32 | Int64(UInt32(bitPattern: parent))
        if let n = nodeIDs[key] { return n }
        let n = Int32(nodePos.count)
        nodePos.append(pos); nodeParent.append(parent); nodeDist.append(-1)
        nodeIDs[key] = n
        return n
    }

    /// The state of a set of nodes (any order, repeats allowed).
    private func state(_ nodes: [Int32]) -> Int32 {
        let key = nodes.count > 1 ? Array(Set(nodes)).sorted() : nodes
        if let s = stateIDs[key] { return s }
        let s = Int32(states.count)
        states.append(key)
        stateIDs[key] = s
        next += [Int32](repeating: Self.unknown, count: 256)
        var d = Int32.max
        for n in key { d = min(d, dist(n)) }
        stateDist.append(key.isEmpty ? 0 : d)
        stateAccepts.append(key.contains(Self.acceptNode))
        return s
    }

    /// The stacks reached from position `pos` (in some alternative) with `parent` below it, each
    /// with a byte to match on top (or the accepting node). Rules are entered; an alternative's
    /// end returns to the parent; a rule that is the last element of its alternative is entered
    /// without keeping its frame (right recursion does not grow the stack).
    private func settle(_ pos: Int32, parent: Int32, into out: inout [Int32], depth: Int) {
        // left recursion is refused when the grammar is read; nullable rules nest at most as
        // deep as the rules are many
        guard depth <= grammar.alternatives.count + 8 else { return }
        switch grammar.elements[Int(pos)] {
        case .bytes: out.append(intern(pos, parent))
        case .end:
            if parent < 0 { out.append(Self.acceptNode) }
            else { settle(nodePos[Int(parent)], parent: nodeParent[Int(parent)], into: &out, depth: depth + 1) }
        case let .rule(r):
            let after = pos + 1
            let below: Int32 = grammar.elements[Int(after)] == .end ? parent : intern(after, parent)
            for a in grammar.alternatives[Int(r)] { settle(a, parent: below, into: &out, depth: depth + 1) }
        }
    }

    /// The state after `s` reads byte `b` (`dead`: refused).
    @inline(__always)
    private func step(_ s: Int32, _ b: UInt8) -> Int32 {
        let k = Int(s) << 8 | Int(b)
        let t = next[k]
        if t != Self.unknown { return t }
        var out: [Int32] = []
        for node in states[Int(s)] where node != Self.acceptNode {
            let pos = nodePos[Int(node)]
            guard case let .bytes(lo, hi) = grammar.elements[Int(pos)], b >= lo && b <= hi else { continue }
            settle(pos + 1, parent: nodeParent[Int(node)], into: &out, depth: 0)
        }
        let r = out.isEmpty ? Self.dead : state(out)
        next[k] = r
        return r
    }

    private func dist(_ node: Int32) -> Int32 {
        if node < 0 { return 0 }
        let d = nodeDist[Int(node)]
        if d >= 0 { return d }
        let v = node == Self.acceptNode ? 0 : grammar.restMin[Int(nodePos[Int(node)])] + dist(nodeParent[Int(node)])
        nodeDist[Int(node)] = v
        return v
    }

    /// The state after `token` (nil: the token is not allowed in `state`). An end-of-sequence
    /// token is allowed where the grammar may end, and leaves the state `ended`.
    public func advance(_ state: Int32, token: Int) -> Int32? {
        lock.lock(); defer { lock.unlock() }
        if eos.contains(token) { return stateAccepts[Int(state)] ? Self.ended : nil }
        guard token >= 0 && token < vocabulary.vocabSize, !vocabulary.tokenBytes[token].isEmpty else { return nil }
        var s = state
        for b in vocabulary.tokenBytes[token] {
            s = step(s, b)
            if s == Self.dead { return nil }
        }
        return s
    }

    /// Whether the grammar may end in `state`.
    public func canEnd(_ state: Int32) -> Bool {
        lock.lock(); defer { lock.unlock() }
        return state == Self.ended || stateAccepts[Int(state)]
    }

    /// Whether the grammar has ended in `state` and nothing can follow.
    public func isComplete(_ state: Int32) -> Bool {
        lock.lock(); defer { lock.unlock() }
        return state == Self.ended || states[Int(state)] == [Self.acceptNode]
    }

    /// The fewest bytes before the grammar can end, from `state`.
    public func distance(_ state: Int32) -> Int {
        lock.lock(); defer { lock.unlock() }
        return Int(stateDist[Int(state)])
    }

    /// For every token id, the fewest bytes that must follow it before the grammar can end
    /// (capped at `refused - 1`), or `refused`. Cached per state.
    public func distances(_ state: Int32) -> [UInt16] {
        lock.lock(); defer { lock.unlock() }
        if let d = cache[state] { hits += 1; return d }
        walks += 1
        let v = vocabulary
        var out = [UInt16](repeating: Self.refused, count: v.vocabSize)
        let accepts = state != Self.ended && stateAccepts[Int(state)]
        for t in eos where t < v.vocabSize { out[t] = accepts ? 0 : Self.refused }
        // walk the trie: the state at each depth along the current path
        var levels = [Int32](repeating: 0, count: v.maxDepth + 1)
        levels[0] = state
        let count = v.byte.count
        v.byte.withUnsafeBufferPointer { bytes in
            v.depth.withUnsafeBufferPointer { depth in
                v.skip.withUnsafeBufferPointer { skip in
                    v.tokenStart.withUnsafeBufferPointer { tokenStart in
                        var n = 1
                        while n < count {
                            let d = Int(depth[n])
                            let s = step(levels[d - 1], bytes[n])
                            if s == Self.dead { n = Int(skip[n]); continue }
                            levels[d] = s
                            let t0 = Int(tokenStart[n]), t1 = Int(tokenStart[n + 1])
                            if t0 < t1 {
                                let m = UInt16(min(Int(stateDist[Int(s)]), Int(Self.refused) - 1))
                                for k in t0..<t1 { out[Int(v.tokens[k])] = m }
                            }
                            n += 1
                        }
                    }
                }
            }
        }
        if cache.count >= cacheLimit, let old = cacheOrder.first {
            cache[old] = nil
            cacheOrder.removeFirst()
        }
        cache[state] = out
        cacheOrder.append(state)
        return out
    }
}

/// One sequence's place in a constraint: the state, moved by each token sampled.
public struct GrammarMatcher: Sendable {
    public let constraint: TokenConstraint
    public private(set) var state: Int32

    public init(_ constraint: TokenConstraint) {
        self.constraint = constraint
        state = constraint.initial
    }

    /// Moves by `token`; false (the state unchanged) when the token is not allowed.
    @discardableResult
    public mutating func accept(_ token: Int) -> Bool {
        guard let s = constraint.advance(state, token: token) else { return false }
        state = s
        return true
    }

    public var isComplete: Bool { constraint.isComplete(state) }
    public var canEnd: Bool { constraint.canEnd(state) }
}

extension TokenConstraint: Equatable {
    public static func == (a: TokenConstraint, b: TokenConstraint) -> Bool { a === b }
}

/// A model's grammars: its vocabulary trie (built on first use) and the constraints of the
/// grammars requests asked for, kept by text (at most `limit`), so that a schema sent again
/// finds its token masks already computed.
public final class GrammarVocabulary: @unchecked Sendable {
    public let tokenizer: Tokenizer
    /// tokens that end a sequence
    public let eos: Set<Int>
    public let limit: Int
    private let lock = NSLock()
    private var trie: VocabularyTrie?
    private var constraints: [String: TokenConstraint] = [:]
    private var order: [String] = []

    public init(tokenizer: Tokenizer, eos: Set<Int>, limit: Int = 16) {
        self.tokenizer = tokenizer; self.eos = eos; self.limit = limit
    }

    public var vocabulary: VocabularyTrie {
        lock.lock(); defer { lock.unlock() }
        if let trie { return trie }
        let t = VocabularyTrie(tokenizer: tokenizer, vocabSize: tokenizer.vocabSize)
        trie = t
        return t
    }

    /// The constraint of GBNF text `gbnf` (throws `Grammar.ParseError`).
    public func constraint(gbnf: String, kind: String) throws -> TokenConstraint {
        let key = kind + "\u{0}" + gbnf
        lock.lock()
        if let c = constraints[key] { lock.unlock(); return c }
        lock.unlock()
        let c = TokenConstraint(grammar: try Grammar(gbnf: gbnf), vocabulary: vocabulary, eos: eos, kind: kind)
        lock.lock(); defer { lock.unlock() }
        if constraints[key] == nil {
            if order.count >= limit { constraints[order.removeFirst()] = nil }
            order.append(key)
        }
        constraints[key] = c
        return c
    }
}
