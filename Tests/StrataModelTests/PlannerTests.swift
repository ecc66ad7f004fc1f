import Foundation
import Testing
@testable import Strata
@testable import StrataPlanner
import StrataTensor

/// A machine with known rates: GEMM time = 1 ms + 0.1 ms per row at 11.5M parameters,
/// 30 GB/s memory, 1 GB/s disk.
func syntheticProfile() -> HardwareProfile {
    let samples = [2, 4, 8, 16, 64, 256, 512].map { m in
        HardwareProfile.GemmSample(m: m, n: 5632, k: 2048, seconds: 1e-3 + 1e-4 * Double(m))
    }
    return HardwareProfile(cpu: "test", cores: 2, threads: 2, memoryBytes: 24 << 30, gemm: samples, memoryReadBytesPerSecond: 30e9,
                           diskReadBytesPerSecond: 1e9, diskWriteBytesPerSecond: 1e9, diskPath: "/tmp", measuredAt: "now")
}

@Suite struct PlannerTests {
    @Test func costModelFitRecoversTheRates() {
        let c = CostModel(profile: syntheticProfile())
        #expect(abs(c.alpha - 1e-3) < 1e-9 && abs(c.beta - 1e-4) < 1e-10)
        // one row is bandwidth-bound
        #expect(abs(c.linear(params: 1e6, bytes: 4e6, rows: 1) - 4e6 / 30e9) < 1e-12)
    }

    @Test func plansRespectTheBudgetAndStreamWhenTheyMust() throws {
        let dir = Fixtures.root + "/configs/llama-2-70b"
        let inv = try PlannerInventory.build(directory: dir, workload: Workload(batch: 1, promptTokens: 512, outputTokens: 128), dtype: .f16)
        #expect(inv.layers == 80 && abs(Double(inv.weightBytes) - 138e9) < 3e9)  // Llama-2-70B in f16: ~138 GB
        let p = syntheticProfile()
        let plan = try Planner.plan(inv: inv, profile: p, request: PlanRequest(budgetBytes: 20 << 30, promptTokens: 512, outputTokens: 128))
        #expect(!plan.streamedLayers.isEmpty && plan.prediction.bottleneck == "disk")
        #expect(plan.ledger.values.reduce(0, +) <= 20 << 30 && plan.prediction.peakResidentBytes <= 20 << 30)
        // disk-bound: a decode step reads the streamed bytes at 1 GB/s, shared by the batch
        let streamedBytes = plan.streamedLayers.reduce(0) { $0 + inv.layerBytes[$1] }
        #expect(abs(plan.prediction.decodeStepSeconds - Double(streamedBytes) / 1e9) / plan.prediction.decodeStepSeconds < 0.05)
        #expect(plan.batch > 1)  // throughput: a bigger batch amortizes the weight reads (FlexGen)
        // more RAM never predicts slower, and the curve rises
        let ys = plan.budgetCurve.map { $0[1] }
        #expect(ys.count >= 2 && zip(ys, ys.dropFirst()).allSatisfy { $0 <= $1 * 1.0001 })
        // latency objective picks batch 1
        let lat = try Planner.plan(inv: inv, profile: p, request: PlanRequest(budgetBytes: 20 << 30, promptTokens: 512, outputTokens: 128, objective: .latency))
        #expect(lat.batch == 1)
        // too small a budget: the error states the minimum, and the minimum plans
        do {
            _ = try Planner.plan(inv: inv, profile: p, request: PlanRequest(budgetBytes: 1 << 30, batch: 1, promptTokens: 512, outputTokens: 128))
            Issue.record("expected budgetTooSmall")
        } catch let PlanError.budgetTooSmall(budget, minimum) {
            #expect(budget == 1 << 30 && minimum > budget)
            let ok = try Planner.plan(inv: inv, profile: p, request: PlanRequest(budgetBytes: minimum, batch: 1, promptTokens: 512, outputTokens: 128, maxPrefetch: 0))
            #expect(ok.streamedLayers.count == 80 - 0 || ok.streamedLayers.count > 70)
        }
        // everything fits: nothing streams
        let big = try Planner.plan(inv: inv, profile: p, request: PlanRequest(budgetBytes: 400 << 30, batch: 1, promptTokens: 512, outputTokens: 128))
        #expect(big.streamedLayers.isEmpty && big.prediction.bottleneck != "disk")
        // reports render
        let text = PlanReport.text(plan, inv: inv, profile: p)
        #expect(text.contains("Budget ledger") && text.contains("bottleneck: disk") && text.contains("D"))
        #expect(PlanReport.svg(plan, inv: inv).hasPrefix("<svg"))
        let json = String(decoding: try JSONEncoder().encode(plan), as: UTF8.self)
        #expect(json.contains("\"streamed_layers\"") && json.contains("\"budget_curve\""))
    }
}
