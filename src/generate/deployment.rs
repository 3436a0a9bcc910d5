//! Where the PetClinic runs: one Kubernetes namespace (`petclinic`) on an EKS cluster in
//! `us-east-1`, several pods per service spread over five nodes in three availability zones.
//!
//! Every pod runs release [`STABLE_VERSION`] except one customers-service pod, a canary of
//! [`CANARY_VERSION`] from a newer ReplicaSet (its pod name has another hash), which shares zone
//! `us-east-1b` with a healthy customers-service pod. The application model makes the canary serve
//! most of customers-service's faults while faults are injected; the pod, node and version of every
//! span are in its resource, for the contributors of investigation.md to find.

/// The release every pod runs but the canary.
pub const STABLE_VERSION: &str = "1.3.2";
/// The release the customers-service canary runs: the one with the bug.
pub const CANARY_VERSION: &str = "1.4.0-rc1";
/// `k8s.namespace.name` of every pod.
pub const NAMESPACE: &str = "petclinic";
/// `cloud.region` of every node.
pub const REGION: &str = "us-east-1";

/// The instrumented services of the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Frontend,
    Customers,
    Vets,
    Visits,
    Billing,
    Insurance,
}

impl Service {
    /// Every service, in the order of their discriminants.
    pub const ALL: [Service; 6] =
        [Service::Frontend, Service::Customers, Service::Vets, Service::Visits, Service::Billing, Service::Insurance];

    /// `service.name` (and the Kubernetes deployment's name).
    pub fn name(self) -> &'static str {
        match self {
            Service::Frontend => "frontend",
            Service::Customers => "customers-service",
            Service::Vets => "vets-service",
            Service::Visits => "visits-service",
            Service::Billing => "billing-service",
            Service::Insurance => "insurance-service",
        }
    }

    /// The pods the service's requests are balanced over, evenly.
    pub fn pods(self) -> &'static [Pod] {
        let first = PODS.iter().position(|p| p.service == self).expect("every service has pods");
        let count = PODS[first..].iter().take_while(|p| p.service == self).count();
        &PODS[first..first + count]
    }
}

/// A worker node: an EC2 instance, named by its private DNS name as EKS names nodes.
#[derive(Debug)]
pub struct Node {
    pub name: &'static str,
    pub zone: &'static str,
}

const NODE_1A: Node = Node { name: "ip-10-0-1-17.ec2.internal", zone: "us-east-1a" };
const NODE_1A_2: Node = Node { name: "ip-10-0-1-52.ec2.internal", zone: "us-east-1a" };
const NODE_1B: Node = Node { name: "ip-10-0-2-44.ec2.internal", zone: "us-east-1b" };
const NODE_1B_2: Node = Node { name: "ip-10-0-2-91.ec2.internal", zone: "us-east-1b" };
const NODE_1C: Node = Node { name: "ip-10-0-3-81.ec2.internal", zone: "us-east-1c" };

/// One pod of a service: what its spans' resource says about where they ran.
#[derive(Debug)]
pub struct Pod {
    pub service: Service,
    pub name: &'static str,
    pub node: &'static Node,
    pub version: &'static str,
}

const fn pod(service: Service, name: &'static str, node: &'static Node) -> Pod {
    Pod { service, name, node, version: STABLE_VERSION }
}

/// Every pod, each service's together.
static PODS: [Pod; 15] = [
    pod(Service::Frontend, "frontend-6c9f7b8d4-2xkqp", &NODE_1A),
    pod(Service::Frontend, "frontend-6c9f7b8d4-h7w9z", &NODE_1B),
    pod(Service::Frontend, "frontend-6c9f7b8d4-tq5mn", &NODE_1C),
    pod(Service::Customers, "customers-service-7d9f8c6b5-abc12", &NODE_1A_2),
    pod(Service::Customers, "customers-service-7d9f8c6b5-k4m8s", &NODE_1B),
    pod(Service::Customers, "customers-service-7d9f8c6b5-p9x2d", &NODE_1C),
    Pod {
        service: Service::Customers,
        name: "customers-service-5b7c4d9f6-zr8vt",
        node: &NODE_1B_2,
        version: CANARY_VERSION,
    },
    pod(Service::Vets, "vets-service-85f6d7c9b-m2n4k", &NODE_1A),
    pod(Service::Vets, "vets-service-85f6d7c9b-w8j3r", &NODE_1C),
    pod(Service::Visits, "visits-service-6b8d9f7c5-f3g7h", &NODE_1A_2),
    pod(Service::Visits, "visits-service-6b8d9f7c5-x9v2b", &NODE_1B_2),
    pod(Service::Billing, "billing-service-7f5c8b6d9-q4r6t", &NODE_1B),
    pod(Service::Billing, "billing-service-7f5c8b6d9-n7p3s", &NODE_1C),
    pod(Service::Insurance, "insurance-service-59d7c6f8b-j5k2l", &NODE_1A),
    pod(Service::Insurance, "insurance-service-59d7c6f8b-v6c9x", &NODE_1B_2),
];

impl Pod {
    /// Whether the pod runs the canary release.
    pub fn is_canary(&self) -> bool {
        self.version == CANARY_VERSION
    }

    /// The resource attributes that place the pod, as the OpenTelemetry Kubernetes and EC2
    /// resource detectors set them (`service.instance.id` as the Kubernetes semantic conventions
    /// recommend: namespace, pod and container names). `service.name` and the environment are the
    /// caller's.
    pub fn placement(&self) -> Vec<(&'static str, String)> {
        let service = self.service.name();
        vec![
            ("service.version", self.version.into()),
            ("service.instance.id", format!("{NAMESPACE}.{}.{service}", self.name)),
            ("k8s.namespace.name", NAMESPACE.into()),
            ("k8s.deployment.name", service.into()),
            ("k8s.pod.name", self.name.into()),
            ("k8s.node.name", self.node.name.into()),
            ("host.name", self.node.name.into()),
            ("cloud.provider", "aws".into()),
            ("cloud.platform", "aws_eks".into()),
            ("cloud.region", REGION.into()),
            ("cloud.availability_zone", self.node.zone.into()),
        ]
    }
}
