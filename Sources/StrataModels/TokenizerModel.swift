import Foundation
import StrataFormats

// MARK: - byte-level alphabet

/// GPT-2's reversible byte <-> printable character map.
enum ByteLevelAlphabet {
    static let byteToChar: [Character] = {
        var bs: [Int] = Array(33...126) + Array(161...172) + Array(174...255)
        var cs = bs
        var n = 0
        for b in 0..<256 where !bs.contains(b) { bs.append(b); cs.append(256 + n); n += 1 }
        var table = [Character](repeating: " ", count: 256)
        for (b, c) in zip(bs, cs) { table[b] = Character(Unicode.Scalar(UInt32(c))!) }
        return table
    }()
    static let charToByte: [Character: UInt8] = {
        var m: [Character: UInt8] = [:]
        for (b, c) in byteToChar.enumerated() { m[c] = UInt8(b) }
        return m
    }()

    static func encode(_ s: String) -> String {
        var out = String()
        out.reserveCapacity(s.utf8.count)
        for b in s.utf8 { out.append(byteToChar[Int(b)]) }
        return out
    }
}

// MARK: - model

/// Byte-pair encoding over a vocab and ranked merges, with byte fallback, unk fusing and
/// `ignore_merges` (whole words in the vocab are taken as they are).
struct BPEModel {
    let vocab: [String: Int]
    let idToToken: [Int: String]
    /// (left id, right id) -> (rank, merged id)
    let merges: [UInt64: (rank: Int, id: Int)]
    let unkID: Int?
    let byteFallback: Bool
    let fuseUnk: Bool
    let ignoreMerges: Bool
    /// ids of <0x00> ... <0xFF>, when byte fallback is on
    let byteIDs: [Int?]

    init(_ o: [String: Any], _ p: JSONPath) throws {
        let type = o["type"] as? String ?? "BPE"
        guard type == "BPE" else { throw p.unsupported(type) }
        guard let v = o["vocab"] as? [String: Any] else { throw p.sub("vocab").malformed("missing or not an object") }
        var vocab: [String: Int] = [:]
        vocab.reserveCapacity(v.count)
        var idToToken: [Int: String] = [:]
        for (k, idAny) in v {
            guard let id = idAny as? Int, id >= 0, id < Tokenizer.maxID else { throw p.sub("vocab").malformed("token '\(k)' has no valid id (an integer in 0..<\(Tokenizer.maxID))") }
            vocab[k] = id
            idToToken[id] = k
        }
        var merges: [UInt64: (Int, Int)] = [:]
        for (rank, m) in try p.list(o, "merges").enumerated() {
            let pair: [String]
            if let s = m as? String {
                let parts = s.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
                pair = parts.map(String.init)
            } else if let a = m as? [String] {
                pair = a
            } else {
                throw p.sub("merges.\(rank)").malformed("not a merge pair")
            }
            guard pair.count == 2, let a = vocab[pair[0]], let b = vocab[pair[1]], let ab = vocab[pair[0] + pair[1]] else {
                throw p.sub("merges.\(rank)").malformed("merge \(pair) names tokens not in the vocab")
            }
            let key = UInt64(a) << 32 | UInt64(b)
            if merges[key] == nil { merges[key] = (rank, ab) }
        }
        if let d = o["dropout"], !(d is NSNull) {
            // tokenizers refuses a dropout that is not a number; any number but 0 samples merges at random
            guard let x = d as? NSNumber, String(cString: x.objCType) != "c" else { throw p.sub("dropout").malformed("expected a number or null, got \(d)") }
            if x.doubleValue != 0 { throw p.sub("dropout").malformed("BPE dropout \(x) is not supported for inference") }
        }
        if let prefix = o["continuing_subword_prefix"] as? String, !prefix.isEmpty { throw p.sub("continuing_subword_prefix").malformed("not supported") }
        if let suffix = o["end_of_word_suffix"] as? String, !suffix.isEmpty { throw p.sub("end_of_word_suffix").malformed("not supported") }
        self.vocab = vocab
        self.idToToken = idToToken
        self.merges = merges
        unkID = try p.string(o, "unk_token").flatMap { vocab[$0] }
        byteFallback = try p.bool(o, "byte_fallback") ?? false
        fuseUnk = try p.bool(o, "fuse_unk") ?? false
        ignoreMerges = try p.bool(o, "ignore_merges") ?? false
        byteIDs = (0..<256).map { vocab[String(format: "<0x%02X>", $0)] }
    }

    func encode(_ word: String, into out: inout [Int]) {
        if ignoreMerges, let id = vocab[word] { out.append(id); return }
        var symbols: [Int] = []
        symbols.reserveCapacity(word.unicodeScalars.count)
        var lastWasUnk = false
        // by Unicode scalar, as tokenizers iterates chars (a Swift Character would join "\r\n",
        // or a letter and its combining marks, into one symbol)
        for scalar in word.unicodeScalars {
            let ch = String(scalar)
            if let id = vocab[ch] {
                symbols.append(id); lastWasUnk = false
            } else if byteFallback, case let ids = ch.utf8.map({ byteIDs[Int($0)] }), ids.allSatisfy({ $0 != nil }) {
                symbols.append(contentsOf: ids.map { $0! }); lastWasUnk = false
            } else if let unk = unkID {
                if !(fuseUnk && lastWasUnk) { symbols.append(unk) }
                lastWasUnk = true
            }
            // no unk token: the character is dropped, as tokenizers does
        }
        mergeAll(&symbols)
        out.append(contentsOf: symbols)
    }

    /// Applies the merges: the lowest-ranked adjacent pair first (leftmost on ties), until none
    /// is left, as tokenizers' `Word::merge_all` does: the symbols in a linked list over their
    /// first positions, candidate pairs in a min-heap by (rank, position), stale candidates
    /// skipped when popped. O(n log n) in the word's length (a 1 MB word takes well under a
    /// second), where rescanning for the best pair after every merge was quadratic.
    func mergeAll(_ symbols: inout [Int]) {
        let n = symbols.count
        if n < 2 { return }
        if n <= 16 {
            // a short word: rescanning is cheaper than the heap's arrays (same order of merges)
            while symbols.count > 1 {
                var bestRank = Int.max, bestPos = -1, bestID = 0
                for i in 0..<(symbols.count - 1) {
                    if let m = merges[UInt64(symbols[i]) << 32 | UInt64(symbols[i + 1])], m.rank < bestRank {
                        bestRank = m.rank; bestPos = i; bestID = m.id
                    }
                }
                if bestPos < 0 { break }
                symbols[bestPos] = bestID
                symbols.remove(at: bestPos + 1)
            }
            return
        }
        var next = Array(1...n)            // n: none
        var prev = Array(-1..<(n - 1))     // -1: none
        var alive = [Bool](repeating: true, count: n)
        var heap = PairHeap()
        func push(_ i: Int) {
            let j = next[i]
            guard j < n, let m = merges[UInt64(symbols[i]) << 32 | UInt64(symbols[j])] else { return }
            heap.push(rank: m.rank, pos: i, left: symbols[i], right: symbols[j])
        }
        for i in 0..<(n - 1) { push(i) }
        while let top = heap.pop() {
            let i = top.pos
            let j = next[i]
            // stale: the left symbol changed or was merged away, or its right neighbour changed
            guard alive[i], j < n, symbols[i] == top.left, symbols[j] == top.right,
                  let m = merges[UInt64(top.left) << 32 | UInt64(top.right)], m.rank == top.rank else { continue }
            symbols[i] = m.id
            alive[j] = false
            next[i] = next[j]
            if next[j] < n { prev[next[j]] = i }
            if prev[i] >= 0 { push(prev[i]) }
            push(i)
        }
        var out: [Int] = []
        out.reserveCapacity(n)
        var i = 0
        while i < n { out.append(symbols[i]); i = next[i] }
        symbols = out
    }
}

/// A binary min-heap of merge candidates ordered by (rank, position).
struct PairHeap {
    struct Entry { var rank: Int; var pos: Int; var left: Int; var right: Int }
    var items: [Entry] = []

    static func less(_ a: Entry, _ b: Entry) -> Bool { a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos }

    mutating func push(rank: Int, pos: Int, left: Int, right: Int) {
        items.append(Entry(rank: rank, pos: pos, left: left, right: right))
        var c = items.count - 1
        while c > 0 {
            let p = (c - 1) / 2
            if !PairHeap.less(items[c], items[p]) { break }
            items.swapAt(c, p)
            c = p
        }
    }

    mutating func pop() -> Entry? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var p = 0
            while true {
                let l = 2 * p + 1, r = l + 1
                var m = p
                if l < items.count && PairHeap.less(items[l], items[m]) { m = l }
                if r < items.count && PairHeap.less(items[r], items[m]) { m = r }
                if m == p { break }
                items.swapAt(p, m)
                p = m
            }
        }
        return first
    }
}
