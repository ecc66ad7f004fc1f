import ArgumentParser
import Foundation
import Strata
import StrataModels

/// What constrained decoding costs per token on a model's vocabulary: a schema (or any JSON
/// object, or a GBNF file) sampled at temperature 1 from random logits for several requests, the
/// grammar's share timed apart from the sampler's (the same logits sampled without the mask).
struct BenchGrammar: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench-grammar",
                                                    abstract: "Time structured output's token masks on a model's vocabulary (per token, cached and not).")
    @Option(name: [.customLong("model"), .customShort("m")], help: "Model folder (holds tokenizer.json) or GGUF file.") var model: String
    @Option(help: "A JSON Schema file (default: any JSON object).") var schema: String?
    @Option(help: "A GBNF grammar file instead of a schema.") var grammar: String?
    @Option(name: [.customLong("tokens"), .customShort("n")], help: "Most tokens per request.") var tokens = 256
    @Option(help: "Requests, one after another (the second and later find masks cached).") var requests = 4
    @Option(help: "Seed of the random logits and the sampler.") var seed: UInt64 = 1
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        let tok = try Tokenizer.open(model: model)
        let eos = Set(tok.specialIDs)
        var t0 = Date()
        let vocab = GrammarVocabulary(tokenizer: tok, eos: eos)
        let trie = vocab.vocabulary
        let trieSeconds = Date().timeIntervalSince(t0)
        let gbnf: String
        if let grammar {
            guard let d = try FileIO.readSmallFile(grammar) else { throw ValidationError("--grammar: \(grammar) not found") }
            gbnf = String(decoding: d, as: UTF8.self)
        } else if let schema {
            guard let d = try FileIO.readSmallFile(schema) else { throw ValidationError("--schema: \(schema) not found") }
            gbnf = try JSONSchemaGrammar.gbnf(schema: JSONValue.parse(d))
        } else {
            gbnf = JSONSchemaGrammar.objectGrammar
        }
        t0 = Date()
        let constraint = try vocab.constraint(gbnf: gbnf, kind: schema != nil ? "json_schema" : grammar != nil ? "grammar" : "json_object")
        let compileSeconds = Date().timeIntervalSince(t0)
        let v = tok.vocabSize
        var rng = Xoshiro256(seed: seed)
        var logits = [Float](repeating: 0, count: v)
        var rows: [[String: Any]] = []
        for r in 0..<requests {
            var p = SamplingParameters(temperature: 1, seed: seed &+ UInt64(r), maxTokens: tokens)
            p.constraint = constraint
            var masked = Sampler(parameters: p, vocabSize: v)
            var plain = Sampler(parameters: SamplingParameters(temperature: 1, seed: seed, maxTokens: tokens), vocabSize: v)
            var m = GrammarMatcher(constraint)
            let walks0 = constraint.walks, hits0 = constraint.hits
            var grammarTime = 0.0, maskedTime = 0.0, plainTime = 0.0, maxStep = 0.0
            var n = 0
            var text: [UInt8] = []
            while n < tokens && !m.isComplete {
                for i in 0..<v { logits[i] = Float(rng.nextUnit() * 8) }
                var a = Date()
                let allowed = constraint.distances(m.state)
                let g1 = Date().timeIntervalSince(a)
                a = Date()
                let id = logits.withUnsafeBufferPointer { masked.sample($0, allowed: allowed, limit: tokens - n - 1) }
                maskedTime += Date().timeIntervalSince(a)
                a = Date()
                guard m.accept(id) else { throw ValidationError("token \(id) was sampled but the grammar refuses it") }
                let g2 = Date().timeIntervalSince(a)
                grammarTime += g1 + g2
                maxStep = max(maxStep, g1 + g2)
                a = Date()
                _ = logits.withUnsafeBufferPointer { plain.sample($0) }
                plainTime += Date().timeIntervalSince(a)
                text += trie.tokenBytes.indices.contains(id) ? trie.tokenBytes[id] : []
                n += 1
            }
            let perToken = (grammarTime + max(0, maskedTime - plainTime)) / Double(max(n, 1))
            rows.append(["request": r, "tokens": n, "complete": m.isComplete, "walks": constraint.walks - walks0, "cached": constraint.hits - hits0,
                         "grammar_us_per_token": grammarTime / Double(max(n, 1)) * 1e6, "mask_apply_us_per_token": max(0, maskedTime - plainTime) / Double(max(n, 1)) * 1e6,
                         "sampler_us_per_token": plainTime / Double(max(n, 1)) * 1e6, "overhead_us_per_token": perToken * 1e6, "slowest_step_ms": maxStep * 1e3,
                         "text": String(decoding: text.prefix(120), as: UTF8.self)])
        }
        if json {
            try printJSON(["vocab": v, "trie_nodes": trie.nodeCount, "trie_build_ms": trieSeconds * 1e3, "compile_ms": compileSeconds * 1e3, "requests": rows])
            return
        }
        print(String(format: "vocabulary %d tokens, trie of %d nodes built in %.0f ms; grammar read in %.1f ms", v, trie.nodeCount, trieSeconds * 1e3, compileSeconds * 1e3))
        print("request  tokens  walks  cached  grammar us/tok  mask us/tok  sampler us/tok  overhead us/tok  slowest step ms")
        for r in rows {
            print(String(format: "%7d  %6d  %5d  %6d  %14.0f  %11.0f  %14.0f  %15.0f  %15.1f", r["request"] as! Int, r["tokens"] as! Int, r["walks"] as! Int,
                         r["cached"] as! Int, r["grammar_us_per_token"] as! Double, r["mask_apply_us_per_token"] as! Double,
                         r["sampler_us_per_token"] as! Double, r["overhead_us_per_token"] as! Double, r["slowest_step_ms"] as! Double))
        }
        if let last = rows.last { print("last text: \(last["text"] as! String)") }
    }
}
