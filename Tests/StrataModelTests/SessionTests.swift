import Foundation
import Strata  // the public API only: what a user of the library has
import Testing

/// The README's library examples, compiled and run on a fixture model.
@Suite struct SessionTests {
    @Test func readmeStreamingExampleRuns() async throws {
        Threads.set(2)
        let loaded = try LoadedModel(directory: Fixtures.model("llama-gqa"))
        let prompt = try loaded.requireTokenizer().encode("The capital of France is")
        let params = SamplingParameters(temperature: 0.7, topP: 0.9, seed: 1, maxTokens: 32)
        var text = "", count = 0
        for try await token in Generator(loaded).stream(promptIDs: prompt, parameters: params) {
            text += token.text
            count += 1
        }
        #expect(count > 0 && count <= 32)
        // the same seed gives the same tokens through the non-streaming call
        let again = try Generator(loaded).generate(promptIDs: prompt, parameters: params)
        #expect(again.text == text)
    }

    @Test func planAndRunUnderABudgetFromTheLibrary() async throws {
        // a synthesized model (the `tiny` preset: 4 layers, random weights of a real layout)
        let dir = NSTemporaryDirectory() + "strata-session-\(UUID().uuidString)"
        try Synth.write(preset: Synth.preset("tiny"), dtype: .f32, seed: 3, to: dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let prompts = [[5, 9, 200, 31, 7, 7, 1000, 12, 4000, 3], [17, 18, 19, 20]]
        let requests = prompts.map { GenerationRequest(prompt: $0, parameters: SamplingParameters(temperature: 0, maxTokens: 12, stopAtEOS: false)) }
        let loaded = try LoadedModel(directory: dir)
        let alone = try prompts.map { try Generator(loaded).generate(promptIDs: $0, parameters: requests[0].parameters).ids }
        let workload = Session.workload(requests)
        // a generous budget: everything resident (1 GiB beyond what the process already holds:
        // under ASan, with the suite's other tests in the same process, that passed 1 GiB)
        let roomy = Session(folder: loaded.folder, ramBudget: PlacementRule.runtimeOverhead() + (1 << 30))
        let all = try roomy.plan(workload, profile: syntheticProfile())
        #expect(all.streamedLayers.isEmpty)
        // near the smallest budget the planner accepts (it says so when asked for less): layers
        // stream, the run holds to the budget and gives the all-RAM tokens
        var minimum = 0
        do {
            _ = try Session(folder: loaded.folder, ramBudget: 1).plan(workload, profile: syntheticProfile())
        } catch let PlanError.budgetTooSmall(_, m) {
            minimum = m
        }
        #expect(minimum > 0 && minimum < all.prediction.peakResidentBytes)
        let budget = minimum
        let tight = Session(folder: loaded.folder, ramBudget: budget)
        let plan = try tight.plan(workload, profile: syntheticProfile())
        #expect(plan.prediction.peakResidentBytes <= budget)
        let result = try tight.run(requests, plan: plan)
        #expect(result.outputs.map { $0.ids } == alone)
        #expect(result.report.measured.peakResidentBytes <= budget && result.report.placement == plan.placement)
        #expect(!plan.streamedLayers.isEmpty && result.report.measured.diskBytesRead > 0)  // layers streamed
        // the plan and the run account in the same lines (LedgerLine), each within the budget
        let names = Set(LedgerLine.allCases.map(\.rawValue))
        #expect(Set(plan.ledger.keys) == names && Set(result.report.measured.peakResidentLines.keys) == names)
        #expect(plan.ledger.values.reduce(0, +) <= budget && result.report.measured.peakResidentLines.values.reduce(0, +) <= budget)
        // what the plan put in RAM for KV is what the run charged (the same KV type and block)
        #expect(plan.ledger[LedgerLine.kv.rawValue] == result.report.measured.peakResidentLines[LedgerLine.kv.rawValue])
        let predicted = try #require(result.report.predicted)
        #expect(predicted["decode_tokens_per_second"] != nil && result.report.error?["decode_tokens_per_second"] != nil)
        // the same run as events: tokens, then the report
        var tokens = 0
        var finished: Session.Result?
        for try await event in tight.events(requests, plan: plan) {
            switch event {
            case .token: tokens += 1
            case let .finished(r): finished = r
            }
        }
        #expect(tokens == 24 && finished?.outputs.map { $0.ids } == alone)
        // no budget, no plan
        #expect(throws: SessionError.self) { try Session(folder: loaded.folder).plan(workload, profile: syntheticProfile()) }
    }
}
