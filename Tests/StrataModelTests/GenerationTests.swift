import Foundation
import Testing
@testable import Strata
@testable import StrataModels

@Suite struct GenerationTests {
    @Test(arguments: f32Models + halfModels)
    func greedyContinuationMatchesTransformers(name: String) throws {
        let ref = try Fixtures.reference(name)
        let loaded = try LoadedModel(directory: Fixtures.model(name))
        var params = SamplingParameters.greedy
        params.maxTokens = 32
        params.stopAtEOS = false
        let r = try Generator(loaded).generate(promptIDs: ref.greedy_prompt, parameters: params)
        #expect(r.ids == ref.greedy_continuation, "\(name)")
        #expect(r.stopReason == .maxTokens)
    }

    @Test func seededSamplingIsReproducibleAndTopK1IsGreedy() throws {
        let loaded = try LoadedModel(directory: Fixtures.model("llama-gqa"))
        let prompt = try Fixtures.reference("llama-gqa").greedy_prompt
        let p = SamplingParameters(temperature: 0.9, topK: 50, topP: 0.9, seed: 42, maxTokens: 20, stopAtEOS: false)
        let a = try Generator(loaded).generate(promptIDs: prompt, parameters: p)
        let b = try Generator(loaded).generate(promptIDs: prompt, parameters: p)
        #expect(a.ids == b.ids && a.ids.count == 20)
        var other = p; other.seed = 43
        let c = try Generator(loaded).generate(promptIDs: prompt, parameters: other)
        #expect(c.ids != a.ids)
        let k1 = try Generator(loaded).generate(promptIDs: prompt, parameters: SamplingParameters(temperature: 1.5, topK: 1, seed: 1, maxTokens: 20, stopAtEOS: false))
        let greedy = try Generator(loaded).generate(promptIDs: prompt, parameters: SamplingParameters(temperature: 0, maxTokens: 20, stopAtEOS: false))
        #expect(k1.ids == greedy.ids)
    }

    @Test func samplerFollowsTheDistribution() {
        // logits for p = [0.5, 0.25, 0.125, 0.125]; top-p 0.7 keeps the first two (0.5 + 0.25 >= 0.7)
        let logits: [Float] = [log(0.5), log(0.25), log(0.125), log(0.125)]
        var s = Sampler(parameters: SamplingParameters(temperature: 1, seed: 7), vocabSize: 4)
        var counts = [0, 0, 0, 0]
        for _ in 0..<20000 { counts[logits.withUnsafeBufferPointer { s.sample($0) }] += 1 }
        #expect(abs(Double(counts[0]) / 20000 - 0.5) < 0.02 && abs(Double(counts[2]) / 20000 - 0.125) < 0.02)
        var tp = Sampler(parameters: SamplingParameters(temperature: 1, topP: 0.7, seed: 7), vocabSize: 4)
        counts = [0, 0, 0, 0]
        for _ in 0..<20000 { counts[logits.withUnsafeBufferPointer { tp.sample($0) }] += 1 }
        #expect(counts[2] == 0 && counts[3] == 0)
        #expect(abs(Double(counts[0]) / 20000 - 2.0 / 3) < 0.02)
        #expect(throws: SamplingError.self) { try SamplingParameters(temperature: -1).validate() }
        #expect(throws: SamplingError.self) { try SamplingParameters(topP: 0).validate() }
    }

    @Test func stopStringsAndEOS() throws {
        let loaded = try LoadedModel(directory: Fixtures.model("gpt2"))
        let prompt = try Fixtures.reference("gpt2").greedy_prompt
        var p = SamplingParameters(temperature: 0, maxTokens: 32, stopAtEOS: false)
        let full = try Generator(loaded).generate(promptIDs: prompt, parameters: p)
        // stop at a piece of text the greedy run produces: the text ends right before it
        let text = full.text
        guard text.count > 6 else { Issue.record("greedy text too short: \(text.debugDescription)"); return }
        let stop = String(text.dropFirst(text.count / 2).prefix(2))
        p.stopStrings = [stop]
        let r = try Generator(loaded).generate(promptIDs: prompt, parameters: p)
        #expect(r.stopReason == .stopString)
        #expect(!r.text.contains(stop) && text.hasPrefix(r.text) && r.ids.count < full.ids.count)
        // EOS: make the first greedy token an EOS and generation stops there
        var q = SamplingParameters(temperature: 0, maxTokens: 32)
        q.stopAtEOS = true
        let eosModel = try LoadedModel(directory: Fixtures.model("gpt2"))
        let first = full.ids[0]
        if eosModel.eos.contains(first) {
            #expect(try Generator(eosModel).generate(promptIDs: prompt, parameters: q).ids.count == 1)
        }
    }

    /// The token pieces of a greedy run (streamed), and stop strings that span 2, 3 and 4 of them:
    /// the end of one piece, the whole of those between, the start of the last.
    static func spanningStops(_ loaded: LoadedModel, _ prompt: [Int], _ p: SamplingParameters) throws -> (pieces: [String], stops: [(Int, String)]) {
        var pieces: [String] = []
        _ = try Generator(loaded).generate(promptIDs: prompt, parameters: p) { t in pieces.append(t.text); return true }
        var stops: [(Int, String)] = []
        for span in 2...4 {
            // the first run of `span` tokens whose first and last pieces are not empty
            for i in 4..<(pieces.count - span) where !pieces[i].isEmpty && !pieces[i + span - 1].isEmpty {
                let stop = String(pieces[i].unicodeScalars.suffix(1)) + pieces[(i + 1)..<(i + span - 1)].joined() + String(pieces[i + span - 1].unicodeScalars.prefix(1))
                stops.append((span, stop))
                break
            }
        }
        return (pieces, stops)
    }

    /// Python's `text[:text.find(stop)]` over scalars: what OpenAI and vLLM return.
    static func before(_ stop: String, in text: String) -> String {
        let t = Array(text.unicodeScalars), s = Array(stop.unicodeScalars)
        guard s.count <= t.count else { return text }
        for i in 0...(t.count - s.count) where t[i..<(i + s.count)].elementsEqual(s) { return String(String.UnicodeScalarView(t[..<i])) }
        return text
    }

    /// A stop string that spans 2-4 tokens ends the text right before it, whole and streamed, in
    /// the one-sequence generator and in the batch engine with n = 3 samples: no part of it leaks.
    @Test func stopStringsSpanningTokensNeverLeak() throws {
        let loaded = try LoadedModel(directory: Fixtures.model("gpt2"))
        let prompt = try Fixtures.reference("gpt2").greedy_prompt
        var p = SamplingParameters(temperature: 0, maxTokens: 32, stopAtEOS: false)
        let (pieces, stops) = try Self.spanningStops(loaded, prompt, p)
        let full = pieces.joined()
        #expect(stops.count == 3, "greedy pieces \(pieces)")
        for (span, stop) in stops {
            let expected = Self.before(stop, in: full)
            #expect(expected.count < full.count && !expected.isEmpty)
            // a decoy that never completes, and one whose prefix is held back then released
            p.stopStrings = [stop, stop + "\u{1}never", "\u{2}"]
            var streamed = ""
            let r = try Generator(loaded).generate(promptIDs: prompt, parameters: p) { t in
                streamed += t.text
                #expect(!streamed.contains(stop) && expected.hasPrefix(streamed), "span \(span): streamed \(streamed.debugDescription)")
                return true
            }
            #expect(r.stopReason == .stopString && r.text == expected && streamed == expected, "span \(span): \(r.text.debugDescription) for \(expected.debugDescription)")
            let engine = BatchEngine(loaded: loaded, config: .init(blocks: 64, blockSize: 4))
            var streams = [String](repeating: "", count: 3)
            let outs = try engine.run([GenerationRequest(prompt: prompt, parameters: p, n: 3)]) { _, sample, t in streams[sample] += t.text }
            #expect(outs.count == 3)
            for o in outs {
                #expect(o.stopReason == .stopString && o.text == expected && streams[o.sample] == expected, "span \(span), sample \(o.sample): \(o.text.debugDescription)")
            }
        }
        // a stop string that never comes: everything held back is handed out at the end
        p.stopStrings = [full.suffix(3) + "\u{3}"]
        var streamed = ""
        let r = try Generator(loaded).generate(promptIDs: prompt, parameters: p) { t in streamed += t.text; return true }
        #expect(r.stopReason == .maxTokens && r.text == full && streamed == full)
    }

    @Test func textOutputHoldsBackOnlyWhatCouldStillStop() {
        // pieces given directly (no decoder): "ab" + "cX" with stop "bcd" releases "abc" only when X arrives
        var o = TextOutput(decoder: nil, parameters: SamplingParameters(stopStrings: ["bcd", "", "zz"]), eos: [])
        func push(_ s: String) -> (String, Bool) { o.push(text: s) }
        #expect(push("ab") == ("a", false))
        #expect(push("c") == ("", false))
        #expect(push("X") == ("bcX", false))
        #expect(push("zbc") == ("z", false))  // "bc" could start "bcd"
        #expect(o.finish() == "bc" && o.text == "abcXzbc")
        var q = TextOutput(decoder: nil, parameters: SamplingParameters(stopStrings: ["bcd"]), eos: [])
        #expect(q.push(text: "xxb") == ("xx", false))
        #expect(q.push(text: "cdyy") == ("", true))
        #expect(q.text == "xx")
        var e = TextOutput(decoder: nil, parameters: SamplingParameters(stopStrings: ["é"]), eos: [])
        #expect(e.push(text: "caf") == ("caf", false))
        #expect(e.push(text: "e\u{301}") == ("e\u{301}", false))  // scalars: a decomposed é is not "é"
    }

    @Test func streamDeliversTheSameTokens() async throws {
        let loaded = try LoadedModel(directory: Fixtures.model("qwen2"))
        let prompt = try Fixtures.reference("qwen2").greedy_prompt
        let p = SamplingParameters(temperature: 0, maxTokens: 12, stopAtEOS: false)
        var ids: [Int] = []
        var text = ""
        for try await t in Generator(loaded).stream(promptIDs: prompt, parameters: p) {
            if t.id >= 0 { ids.append(t.id) }
            text += t.text
        }
        let r = try Generator(loaded).generate(promptIDs: prompt, parameters: p)
        #expect(ids == r.ids && text == r.text)
    }
}

@Suite struct ConcurrentGeneratorTests {
    @Test func generatorsOnOneModelRunAtOnceAndAgree() throws {
        let loaded = try LoadedModel(directory: Fixtures.model("llama-gqa"))
        let ref = try Fixtures.reference("llama-gqa")
        let prompts = [ref.greedy_prompt, ref.sequences[1], Array(ref.sequences[1].prefix(5)), ref.sequences[0]]
        var params = SamplingParameters.greedy
        params.maxTokens = 16
        params.stopAtEOS = false
        let p = params
        let alone = try prompts.map { try Generator(loaded).generate(promptIDs: $0, parameters: p).ids }
        final class Box: @unchecked Sendable { var ids = [[Int]](repeating: [], count: 4); let lock = NSLock() }
        let box = Box()
        // four generations at once on the one model (each cache has its own workspace)
        DispatchQueue.concurrentPerform(iterations: 4) { i in
            let ids = (try? Generator(loaded).generate(promptIDs: prompts[i], parameters: p).ids) ?? []
            box.lock.lock(); box.ids[i] = ids; box.lock.unlock()
        }
        #expect(box.ids == alone)
        #expect(box.ids[0] == Array(ref.greedy_continuation.prefix(16)))
    }
}
