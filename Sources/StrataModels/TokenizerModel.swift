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
        for (rank, m) in ((o["merges"] as? [Any]) ?? []).enumerated() {
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
        if o["dropout"] is Double { throw p.sub("dropout").malformed("BPE dropout is not supported for inference") }
        if let prefix = o["continuing_subword_prefix"] as? String, !prefix.isEmpty { throw p.sub("continuing_subword_prefix").malformed("not supported") }
        if let suffix = o["end_of_word_suffix"] as? String, !suffix.isEmpty { throw p.sub("end_of_word_suffix").malformed("not supported") }
        self.vocab = vocab
        self.idToToken = idToToken
        self.merges = merges
        unkID = (o["unk_token"] as? String).flatMap { vocab[$0] }
        byteFallback = o["byte_fallback"] as? Bool ?? false
        fuseUnk = o["fuse_unk"] as? Bool ?? false
        ignoreMerges = o["ignore_merges"] as? Bool ?? false
        byteIDs = (0..<256).map { vocab[String(format: "<0x%02X>", $0)] }
    }

    func encode(_ word: String, into out: inout [Int]) {
        if ignoreMerges, let id = vocab[word] { out.append(id); return }
        var symbols: [Int] = []
        symbols.reserveCapacity(word.unicodeScalars.count)
        var lastWasUnk = false
        for ch in word {
            if let id = vocab[String(ch)] {
                symbols.append(id); lastWasUnk = false
            } else if byteFallback, case let ids = String(ch).utf8.map({ byteIDs[Int($0)] }), ids.allSatisfy({ $0 != nil }) {
                symbols.append(contentsOf: ids.map { $0! }); lastWasUnk = false
            } else if let unk = unkID {
                if !(fuseUnk && lastWasUnk) { symbols.append(unk) }
                lastWasUnk = true
            }
            // no unk token: the character is dropped, as tokenizers does
        }
        // merge the lowest-ranked adjacent pair (leftmost on ties) until none is left
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
        out.append(contentsOf: symbols)
    }
}
