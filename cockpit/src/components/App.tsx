// The page: header with the system's state and the actions, the installs in progress,
// and the table of extensions. Without administrative access everything is shown but
// every control is disabled, with a hint saying how to get access.

import { useCallback, useEffect, useMemo, useState, useSyncExternalStore } from "react";
import { Alert, AlertActionCloseButton, AlertGroup } from "@patternfly/react-core/dist/esm/components/Alert/index.js";
import { Button } from "@patternfly/react-core/dist/esm/components/Button/index.js";
import { EmptyState, EmptyStateActions, EmptyStateBody, EmptyStateFooter } from "@patternfly/react-core/dist/esm/components/EmptyState/index.js";
import { Flex, FlexItem } from "@patternfly/react-core/dist/esm/layouts/Flex/index.js";
import { Page, PageSection } from "@patternfly/react-core/dist/esm/components/Page/index.js";
import { Spinner } from "@patternfly/react-core/dist/esm/components/Spinner/index.js";
import { Title } from "@patternfly/react-core/dist/esm/components/Title/index.js";
import ExclamationCircleIcon from "@patternfly/react-icons/dist/esm/icons/exclamation-circle-icon";
import CubesIcon from "@patternfly/react-icons/dist/esm/icons/cubes-icon";

import { type BootReportState, watchBootReport } from "../api/boot-report";
import { BOOT_STATES } from "../api/contract";
import { describeFailure } from "../api/errors";
import type { ExtensionsService } from "../api/service";
import { AdminButton } from "./AdminButton";
import { ExtensionsTable } from "./ExtensionsTable";
import { InstallDialog } from "./InstallDialog";
import { Jobs } from "./Jobs";
import { Overview } from "./Overview";

/** The header buttons' tooltip without administrative access. */
const NEEDS_ADMIN = "Needs administrative access.";

interface Notice {
  key: number;
  variant: "success" | "danger" | "info";
  title: string;
}

function usePermission(permission: CockpitPermission): boolean {
  const [allowed, setAllowed] = useState(permission.allowed === true);
  useEffect(() => {
    const update = () => setAllowed(permission.allowed === true);
    permission.addEventListener("changed", update);
    update();
    return () => permission.removeEventListener("changed", update);
  }, [permission]);
  return allowed;
}

function useBootReport(): BootReportState {
  const [report, setReport] = useState<BootReportState>({ kind: "loading" });
  useEffect(() => watchBootReport(setReport), []);
  return report;
}

export function App({ service, permission }: { service: ExtensionsService; permission: CockpitPermission }) {
  const snapshot = useSyncExternalStore(service.subscribe, service.snapshot);
  const admin = usePermission(permission);
  const report = useBootReport();
  const [installing, setInstalling] = useState(false);
  const [refreshing, setRefreshing] = useState(false);
  const [askingCheck, setAskingCheck] = useState(false);
  const [notices, setNotices] = useState<Notice[]>([]);

  const notify = useCallback((variant: Notice["variant"], title: string) => {
    setNotices((old) => [...old, { key: Date.now() + Math.random(), variant, title }]);
  }, []);
  const onError = useCallback((message: string) => notify("danger", message), [notify]);
  const onSuccess = useCallback((message: string) => notify("success", message), [notify]);
  /** The extensions an update job is running for. */
  const updating = useMemo(
    () => snapshot.jobs.filter((j) => j.type === "update").flatMap((j) => j.names),
    [snapshot.jobs],
  );

  const refresh = () => {
    setRefreshing(true);
    service
      .refresh()
      .then(([merged]) => {
        const names = Array.isArray(merged) ? merged.join(", ") : "";
        notify("success", names ? `Refreshed: merged ${names}` : "Refreshed: no extension is merged");
      })
      .catch((e: unknown) => onError(describeFailure(e, "refresh")))
      .finally(() => setRefreshing(false));
  };

  // The check runs as a job, listed with its progress; the button waits for it to end.
  const checkForUpdates = () => {
    setAskingCheck(true);
    service
      .checkUpdates()
      .catch((e: unknown) => onError(describeFailure(e, "check")))
      .finally(() => setAskingCheck(false));
  };
  const checking = askingCheck || snapshot.jobs.some((j) => j.type === "check");

  const { connection, manager } = snapshot;
  const states = manager && manager.bootStates.length > 0 ? manager.bootStates : [...BOOT_STATES];
  const current = manager?.bootState ?? "none";

  let body: React.ReactNode;
  if (connection.kind === "unavailable") {
    body = (
      <EmptyState titleText="The system extensions service is not available" headingLevel="h2" icon={ExclamationCircleIcon} status="danger">
        <EmptyStateBody>{describeFailure(connection.error, "read")}</EmptyStateBody>
        <EmptyStateFooter>
          <EmptyStateActions>
            <Button variant="primary" onClick={() => service.retry()}>
              Try again
            </Button>
          </EmptyStateActions>
        </EmptyStateFooter>
      </EmptyState>
    );
  } else if (!manager) {
    body = <EmptyState titleText="Connecting to the system extensions service" headingLevel="h2" icon={Spinner} />;
  } else {
    body = (
      <>
        <Overview manager={manager} report={report} />
        <Jobs service={service} jobs={snapshot.jobs} finished={snapshot.finished} admin={admin} onError={onError} />
        {snapshot.extensions.length > 0 ? (
          <ExtensionsTable
            service={service}
            extensions={snapshot.extensions}
            updating={updating}
            states={states}
            current={current}
            admin={admin}
            onError={onError}
            onSuccess={onSuccess}
          />
        ) : (
          <EmptyState titleText="No system extensions are installed" headingLevel="h2" icon={CubesIcon}>
            <EmptyStateBody>Install one from an OCI registry or an https URL.</EmptyStateBody>
          </EmptyState>
        )}
      </>
    );
  }

  return (
    <Page className="kx-page">
      <PageSection>
        <Flex justifyContent={{ default: "justifyContentSpaceBetween" }} alignItems={{ default: "alignItemsCenter" }}>
          <FlexItem>
            <Title headingLevel="h1">System extensions</Title>
          </FlexItem>
          <FlexItem>
            <Flex spaceItems={{ default: "spaceItemsSm" }}>
              <AdminButton
                admin={admin}
                variant="secondary"
                label="Check for updates"
                needsAdmin={NEEDS_ADMIN}
                isLoading={checking}
                onClick={checkForUpdates}
              />
              <AdminButton
                admin={admin}
                variant="secondary"
                label="Refresh"
                needsAdmin={NEEDS_ADMIN}
                isLoading={refreshing}
                onClick={refresh}
              />
              <AdminButton
                admin={admin}
                variant="primary"
                label="Install…"
                needsAdmin={NEEDS_ADMIN}
                onClick={() => setInstalling(true)}
              />
            </Flex>
          </FlexItem>
        </Flex>
        {!admin && (
          <Alert
            id="read-only"
            isInline
            variant="info"
            title="Read only: you do not have administrative access"
            className="kx-admin-hint"
          >
            Turn on administrative access (the “Limited access” button at the top of Cockpit) to install, enable, update or
            remove extensions.
          </Alert>
        )}
      </PageSection>
      <PageSection>{body}</PageSection>
      {installing && (
        <InstallDialog service={service} states={states} current={current} onClose={() => setInstalling(false)} />
      )}
      <AlertGroup isToast isLiveRegion>
        {notices.map((n) => (
          <Alert
            key={n.key}
            variant={n.variant}
            title={n.title}
            actionClose={<AlertActionCloseButton onClose={() => setNotices((old) => old.filter((o) => o.key !== n.key))} />}
          />
        ))}
      </AlertGroup>
    </Page>
  );
}
